"""The admin speaks dollars: money is typed and shown as $12.34 and stored as cents; read-only pages have no Save
button; voiding asks for confirmation with a reason on its own page; actions are granted by permissions."""

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from alma_billing.core.models import AuditEvent
from alma_billing.core.money import DollarsError, DollarsField, parse_dollars
from invoices.models import Invoice, TherapySession
from tests.factories import (
    EligibilitySnapshotFactory,
    InvoiceFactory,
    PatientFactory,
    PaymentAllocationFactory,
    PaymentFactory,
    TherapySessionFactory,
)
from tests.staff import signed_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("typed", "cents"),
    [("12.34", 1234), ("$12.34", 1234), ("1,234.50", 123_450), ("12", 1200), (".5", 50), (" $7.1 ", 710), ("0", 0)],
)
def test_dollars_are_read_as_cents(typed: str, cents: int) -> None:
    assert parse_dollars(typed) == cents


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("-1.00", "cannot be negative"),
        ("1.234", "at most 2 digits after the decimal point"),
        ("NaN", "like 12.34"),
        ("inf", "like 12.34"),
        ("1e5", "like 12.34"),
        ("99999999999", "at most $10,000,000.00"),
        ("9" * 5000, "at most $10,000,000.00"),
        ("١٢٣", "digits 0-9"),
        ("１２", "digits 0-9"),
        ("12\x00", "digits 0-9"),
        ("1,23", "like 12.34"),
        ("$", "like 12.34"),
        ("12.34.56", "like 12.34"),
    ],
)
def test_anything_else_is_refused_with_a_message(typed: str, says: str) -> None:
    with pytest.raises(DollarsError, match=None) as refused:
        parse_dollars(typed)
    assert says in str(refused.value)


def test_a_field_that_may_be_negative_says_so() -> None:
    assert parse_dollars("-$5.00", allow_negative=True) == -500
    assert parse_dollars("$-5.00", allow_negative=True) == -500


def test_the_field_shows_cents_as_dollars_and_cleans_to_cents() -> None:
    field = DollarsField(required=False)
    assert field.prepare_value(123_450) == "$1,234.50"
    assert field.clean("$1,234.50") == 123_450
    assert field.clean("") is None
    assert not field.has_changed(1200, "$12.00")
    assert field.has_changed(1200, "12.01")


def _shown_not_typed(model_admin: Any, request: Any) -> list[Any]:
    """List columns and read-only fields (form fields are checked for the dollars field instead)."""
    names = list(model_admin.get_list_display(request)) if hasattr(model_admin, "get_list_display") else []
    return names + list(model_admin.get_readonly_fields(request))


def test_no_admin_page_shows_or_takes_raw_cents() -> None:
    """Every registered admin and inline: no `*_cents` column shown as a bare number, and every `*_cents` form
    field is the dollars field."""
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.create_superuser("checker", "c@alma.invalid", "x")
    checked = 0
    for model_admin in admin.site._registry.values():
        for each in [model_admin, *model_admin.get_inline_instances(request)]:
            raw = [n for n in _shown_not_typed(each, request) if isinstance(n, str) and n.endswith("_cents")]
            assert not raw, f"{type(each).__name__} shows cents: {raw}"
            form = each.get_formset(request).form if hasattr(each, "get_formset") else each.get_form(request)  # type: ignore[attr-defined]
            for name, field in form.base_fields.items():
                if name.endswith("_cents"):
                    assert isinstance(field, DollarsField), f"{type(each).__name__}.{name} is typed in cents"
                    checked += 1
    assert checked >= 5  # sessions and eligibility checks have editable money


def _session_form(patient: Any, provider: Any, **money: str) -> dict[str, Any]:
    return {
        "patient": patient.pk,
        "provider": provider.pk,
        "date_of_service": "2026-11-20",
        "cpt_code": "90837",
        "billing_type": "self_pay",
        **money,
    }


def test_ops_type_a_session_rate_in_dollars_and_see_it_in_dollars(ops: Client) -> None:
    existing = TherapySessionFactory()
    form = _session_form(existing.patient, existing.provider, allowed_amount_cents="", self_pay_rate_cents="$1,175.50")
    response = ops.post("/admin/invoices/therapysession/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    session = TherapySession.objects.exclude(pk=existing.pk).get()
    assert session.self_pay_rate_cents == 117_550 and session.allowed_amount_cents is None
    page = ops.get(f"/admin/invoices/therapysession/{session.pk}/change/").content.decode()
    assert 'value="$1,175.50"' in page


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("175.001", "at most 2 digits after the decimal point"),
        ("-175", "cannot be negative"),
        ("NaN", "like 12.34"),
        ("１７５", "digits 0-9"),
        ("175\x00", "digits 0-9"),
        ("1" * 400, "at most $10,000,000.00"),
    ],
)
def test_a_bad_amount_is_refused_on_the_form_and_nothing_is_stored(ops: Client, typed: str, says: str) -> None:
    existing = TherapySessionFactory()
    form = _session_form(existing.patient, existing.provider, self_pay_rate_cents=typed)
    response = ops.post("/admin/invoices/therapysession/add/", form)
    assert response.status_code == 200
    assert says in response.content.decode()
    assert TherapySession.objects.count() == 1


def test_a_wrong_type_of_value_is_refused_too(ops: Client) -> None:
    existing = TherapySessionFactory()
    form = _session_form(existing.patient, existing.provider)
    response = ops.post("/admin/invoices/therapysession/add/", {**form, "self_pay_rate_cents": ["1", "2"]})
    assert response.status_code in (200, 302)
    assert TherapySession.objects.filter(self_pay_rate_cents__gt=10_000_000_00).count() == 0


def test_lists_and_read_only_pages_show_dollars(ops: Client) -> None:
    snapshot = EligibilitySnapshotFactory(copay_cents=3_000, deductible_remaining_cents=125_000)
    listing = ops.get("/admin/invoices/eligibilitysnapshot/").content.decode()
    assert "$30.00" in listing and "$1,250.00" in listing and "$5,000.00" in listing
    invoice = InvoiceFactory(amount_cents=12_345)
    billed = invoice.session
    TherapySession.objects.filter(pk=billed.pk).update(billing_outcome=TherapySession.Outcome.INVOICED)
    session_page = ops.get(f"/admin/invoices/therapysession/{billed.pk}/change/").content.decode()
    assert "$150.00" in session_page and 'name="allowed_amount_cents"' not in session_page
    assert "$123.45" in ops.get(f"/admin/invoices/invoice/{invoice.pk}/change/").content.decode()
    assert snapshot.pk


def test_the_invoice_list_filters_by_amount_in_dollars(ops: Client) -> None:
    small, large = InvoiceFactory(amount_cents=2_000), InvoiceFactory(amount_cents=30_000)
    listing = ops.get("/admin/invoices/invoice/").content.decode()
    assert "$50.00 to under $200.00" in listing and "$200.00 or more" in listing
    filtered = ops.get("/admin/invoices/invoice/?amount=20000-").content.decode()
    assert large.number in filtered and small.number not in filtered
    assert ops.get("/admin/invoices/invoice/?amount=junk").status_code == 200
    assert ops.get("/admin/invoices/invoice/?amount=%00").status_code == 400  # NUL is refused site-wide


def test_read_only_pages_have_no_save_button(ops: Client, provider: Any, provider_client: Client) -> None:
    invoice = InvoiceFactory(session__provider=provider)
    for client in (ops, provider_client):
        page = client.get(f"/admin/invoices/invoice/{invoice.pk}/change/")
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode() and 'name="_continue"' not in page.content.decode()
    # A forged save changes nothing.
    ops.post(f"/admin/invoices/invoice/{invoice.pk}/change/", {"amount_cents": "1", "status": "void"})
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN and invoice.amount_cents == 12_000


def test_audit_rows_have_no_save_button_even_for_a_superuser(superuser_client: Client) -> None:
    event = AuditEvent.objects.create(action="invoice.voided", object_type="invoices.invoice", object_id="1")
    page = superuser_client.get(f"/admin/core/auditevent/{event.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert superuser_client.get("/admin/core/auditevent/add/").status_code == 403
    assert superuser_client.post(f"/admin/core/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    superuser_client.post(f"/admin/core/auditevent/{event.pk}/change/", {"action": "changed"})
    event.refresh_from_db()
    assert event.action == "invoice.voided" and AuditEvent.objects.filter(pk=event.pk).exists()


def _paid(invoice: Invoice) -> Any:
    from payments.models import Payment

    payment = PaymentFactory(
        patient=invoice.patient,
        amount_cents=invoice.amount_cents,
        status=Payment.Status.SUCCEEDED,
        attempt_key=f"ops-admin-{invoice.pk}",
        stripe_payment_intent_id=f"pi_ops_admin_{invoice.pk}",
        card_brand="visa",
        card_last4="4242",
    )
    PaymentAllocationFactory(payment=payment, invoice=invoice)
    return payment


def test_there_is_no_view_site_link_and_invoices_and_payments_have_a_date_hierarchy(ops: Client) -> None:
    _paid(InvoiceFactory(amount_cents=9_950))
    assert "View site" not in ops.get("/admin/").content.decode()
    assert "issued_at__" in ops.get("/admin/invoices/invoice/").content.decode()
    payments = ops.get("/admin/payments/payment/").content.decode()
    assert "created_at__" in payments and "$99.50" in payments
    assert ops.get("/admin/invoices/invoice/?issued_at__year=abc").status_code in (200, 302)


def test_a_payment_page_shows_its_rows_in_dollars_and_has_no_save_button(ops: Client) -> None:
    payment = _paid(InvoiceFactory(amount_cents=123_456))
    page = ops.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert page.count("$1,234.56") >= 2  # the payment and its allocation row
    assert 'name="_save"' not in page and "123456" not in page


# Voiding ------------------------------------------------------------------------------------------------------------


def _select(invoice: Invoice, **extra: Any) -> dict[str, Any]:
    return {"action": "void_invoices", "_selected_action": [invoice.pk], **extra}


def test_voiding_asks_for_confirmation_with_a_reason_on_its_own_page(ops: Client, ops_user: Any) -> None:
    invoice = InvoiceFactory(amount_cents=4_500)
    page = ops.post("/admin/invoices/invoice/", _select(invoice))
    text = page.content.decode()
    assert page.status_code == 200 and "Void invoices? Confirm with a reason" in text
    assert invoice.number in text and "$45.00" in text and 'name="reason"' in text and "csrfmiddlewaretoken" in text
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN and not AuditEvent.objects.filter(action="invoice.voided").exists()

    missing = ops.post("/admin/invoices/invoice/", _select(invoice, post="yes", reason="   "))
    assert "Give a reason for voiding" in missing.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN

    done = ops.post("/admin/invoices/invoice/", _select(invoice, post="yes", reason="Entered twice"), follow=True)
    assert f"{invoice.number} voided." in done.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID and invoice.void_reason == "Entered twice"
    event = AuditEvent.objects.get(action="invoice.voided", object_id=str(invoice.pk))
    assert event.actor == ops_user and event.data["reason"] == "Entered twice"


def test_going_back_or_opening_the_page_changes_nothing(ops: Client) -> None:
    invoice = InvoiceFactory()
    page = ops.post("/admin/invoices/invoice/", _select(invoice)).content.decode()
    assert 'href="/admin/invoices/invoice/"' in page  # "No, go back" is a plain link to the list
    assert ops.get("/admin/invoices/invoice/", _select(invoice, post="yes", reason="x")).status_code in (200, 302)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def test_the_confirmation_needs_the_csrf_token(ops_user: Any) -> None:
    invoice = InvoiceFactory()
    client = signed_in(ops_user)
    client.handler.enforce_csrf_checks = True
    response = client.post("/admin/invoices/invoice/", _select(invoice, post="yes", reason="Entered twice"))
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def test_a_provider_cannot_void_even_with_a_forged_confirmation(provider: Any, provider_client: Client) -> None:
    invoice = InvoiceFactory(session__provider=provider)
    listing = provider_client.get("/admin/invoices/invoice/").content.decode()
    assert "void_invoices" not in listing and "resend_link" in listing
    provider_client.post("/admin/invoices/invoice/", _select(invoice, post="yes", reason="Because"))
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def test_voiding_another_providers_or_a_paid_invoice_says_why(ops: Client) -> None:
    paid = InvoiceFactory(status=Invoice.Status.PAID)
    done = ops.post("/admin/invoices/invoice/", _select(paid, post="yes", reason="Oops"), follow=True)
    assert "only open invoices can be voided" in done.content.decode()
    paid.refresh_from_db()
    assert paid.status == Invoice.Status.PAID


def test_ops_is_a_permission_not_a_group_name() -> None:
    from django.contrib.auth.models import Permission

    from alma_billing.core.staff import is_ops

    user = get_user_model().objects.create_user("new-role", is_staff=True)
    assert not is_ops(user)
    user.user_permissions.add(Permission.objects.get(codename="see_all_providers"))
    user = get_user_model().objects.get(pk=user.pk)  # a fresh permission cache
    assert is_ops(user)
    PatientFactory()


def test_reminder_runs_are_read_only_for_ops(ops: Client) -> None:
    assert ops.get("/admin/invoices/reminderrun/add/").status_code == 403
    assert ops.get("/admin/invoices/reminderrun/").status_code == 200
