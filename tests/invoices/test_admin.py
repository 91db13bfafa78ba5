"""The staff side: providers see only their own patients; ops see everything, void, and watch the dashboard."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from invoices.models import Invoice, Patient, TherapySession
from tests.factories import (
    AutopayAttemptFactory,
    AutopayEnrollmentFactory,
    InvoiceFactory,
    PatientFactory,
    PaymentAllocationFactory,
    PaymentFactory,
    ProviderFactory,
    TherapySessionFactory,
)
from tests.staff import staff_login
from verification.models import PayLink
from verification.services import pay_link_create

pytestmark = pytest.mark.django_db


def provider_client(provider) -> Client:
    provider.user.groups.add(Group.objects.get(name="Providers"))
    client = Client()
    staff_login(client, provider.user)
    return client


@pytest.fixture
def ops() -> Client:
    user = get_user_model().objects.create_user("ops1", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    client = Client()
    staff_login(client, user)
    return client


@pytest.fixture
def two_providers():
    mine, theirs = ProviderFactory(display_name="Dr. Mine"), ProviderFactory(display_name="Dr. Theirs")
    my_invoice = InvoiceFactory(session__provider=mine, session__patient=PatientFactory(last_name="Mineson"))
    their_invoice = InvoiceFactory(session__provider=theirs, session__patient=PatientFactory(last_name="Theirson"))
    return mine, theirs, my_invoice, their_invoice


@pytest.mark.parametrize("page", ["invoice", "patient", "therapysession"])
def test_a_provider_sees_only_their_own_rows(two_providers, page: str) -> None:
    mine, _, my_invoice, their_invoice = two_providers
    client = provider_client(mine)
    listing = client.get(f"/admin/invoices/{page}/").content.decode()
    assert "Mineson" in listing
    assert "Theirson" not in listing


def test_a_provider_cannot_open_another_providers_invoice_or_patient(two_providers) -> None:
    mine, _, my_invoice, their_invoice = two_providers
    client = provider_client(mine)
    assert client.get(f"/admin/invoices/invoice/{my_invoice.pk}/change/").status_code == 200
    assert client.get(f"/admin/invoices/invoice/{their_invoice.pk}/change/").status_code == 302  # "doesn't exist"
    assert client.get(f"/admin/invoices/patient/{their_invoice.patient_id}/change/").status_code == 302
    assert "0 results" in client.get("/admin/invoices/invoice/?q=Theirson").content.decode()


def test_ops_see_everyone(two_providers, ops) -> None:
    listing = ops.get("/admin/invoices/invoice/").content.decode()
    assert "Mineson" in listing and "Theirson" in listing


def test_a_provider_adds_a_patient_and_books_a_session_with_them(two_providers) -> None:
    mine, *_ = two_providers
    client = provider_client(mine)
    response = client.post(
        "/admin/invoices/patient/add/",
        {
            "first_name": "New",
            "last_name": "Person",
            "email": "new@example.com",
            "phone": "(415) 555-0132",
            "coverages-TOTAL_FORMS": "0",
            "coverages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    patient = Patient.objects.get(last_name="Person")
    assert patient.added_by == mine
    add_page = client.get("/admin/invoices/therapysession/add/").content.decode()
    assert "New Person" in add_page and "Theirson" not in add_page


def test_money_is_read_only_once_issued(two_providers, ops) -> None:
    _, _, my_invoice, _ = two_providers
    ops.post(f"/admin/invoices/invoice/{my_invoice.pk}/change/", {"amount_cents": 1, "status": "paid"})
    my_invoice.refresh_from_db()
    assert my_invoice.amount_cents == 12_000 and my_invoice.status == Invoice.Status.OPEN
    assert ops.get("/admin/invoices/invoice/add/").status_code == 403


def test_p3_provider_records_an_outside_payment_the_invoice_stays_open_and_is_flagged(two_providers, ops) -> None:
    mine, _, my_invoice, _ = two_providers
    client = provider_client(mine)
    client.post(
        "/admin/invoices/invoice/",
        {
            "action": "record_outside_payment",
            "_selected_action": [my_invoice.pk],
            "note": "Patient says paid by check",
        },
    )
    my_invoice.refresh_from_db()
    assert my_invoice.status == Invoice.Status.OPEN
    assert my_invoice.outside_payment_note == "Patient says paid by check"
    flagged = ops.get("/admin/invoices/invoice/?discrepancy=open").content.decode()
    assert f">{my_invoice.number}</a>" in flagged and "paid outside? (reconcile)" in flagged
    event = AuditEvent.objects.get(action="invoice.outside_payment_reported")
    assert event.actor == mine.user


def test_p3_ops_resolve_a_discrepancy_by_voiding_with_a_reason(two_providers, ops) -> None:
    mine, _, my_invoice, _ = two_providers
    Invoice.objects.filter(pk=my_invoice.pk).update(outside_payment_reported_at=timezone.now())
    ops.post("/admin/invoices/invoice/", {"action": "void_invoices", "_selected_action": [my_invoice.pk], "note": ""})
    my_invoice.refresh_from_db()
    assert my_invoice.status == Invoice.Status.OPEN  # no reason, no void

    # The action asks for confirmation on its own page (the reason is required there); then it voids.
    confirm = {"action": "void_invoices", "_selected_action": [my_invoice.pk], "post": "yes"}
    ops.post("/admin/invoices/invoice/", {**confirm, "reason": ""})
    my_invoice.refresh_from_db()
    assert my_invoice.status == Invoice.Status.OPEN
    ops.post("/admin/invoices/invoice/", {**confirm, "reason": "Provider confirmed cash payment"})
    my_invoice.refresh_from_db()
    assert my_invoice.status == Invoice.Status.VOID and my_invoice.void_reason == "Provider confirmed cash payment"
    assert f">{my_invoice.number}</a>" not in ops.get("/admin/invoices/invoice/?discrepancy=open").content.decode()


def test_a_provider_cannot_void(two_providers) -> None:
    mine, _, my_invoice, _ = two_providers
    provider_client(mine).post(
        "/admin/invoices/invoice/",
        {
            "action": "void_invoices",
            "_selected_action": [my_invoice.pk],
            "note": "please",
        },
    )
    my_invoice.refresh_from_db()
    assert my_invoice.status == Invoice.Status.OPEN


def test_changing_a_patients_phone_is_audited_and_resets_their_links(two_providers) -> None:
    mine, _, my_invoice, _ = two_providers
    old_link, _ = pay_link_create(patient=my_invoice.patient, invoice=my_invoice)
    client = provider_client(mine)
    patient = my_invoice.patient
    response = client.post(
        f"/admin/invoices/patient/{patient.pk}/change/",
        {
            "first_name": patient.first_name,
            "last_name": patient.last_name,
            "email": patient.email,
            "phone": "(617) 555-0100",
            "coverages-TOTAL_FORMS": "0",
            "coverages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.phone.as_e164 == "+16175550100"
    event = AuditEvent.objects.get(action="patient.phone_changed")
    assert event.actor == mine.user and event.data == {"ends_in": "00"}
    assert PayLink.objects.get(pk=old_link.pk).revoked_at is not None
    assert len(mail.outbox) == 1 and "/pay/" in mail.outbox[0].body  # a fresh link for what is open


def test_a_provider_completes_a_session_and_the_invoice_is_issued(
    two_providers, django_capture_on_commit_callbacks
) -> None:
    mine, *_ = two_providers
    session = TherapySessionFactory(
        provider=mine, billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=15_000
    )
    client = provider_client(mine)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/invoices/therapysession/", {"action": "mark_completed", "_selected_action": [session.pk]})
    invoice = Invoice.objects.get(session=session)
    assert invoice.amount_cents == 15_000
    assert AuditEvent.objects.get(action="session.completed").actor == mine.user


def test_resend_link_emails_a_fresh_link(two_providers) -> None:
    mine, _, my_invoice, _ = two_providers
    provider_client(mine).post(
        "/admin/invoices/invoice/", {"action": "resend_link", "_selected_action": [my_invoice.pk]}
    )
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [my_invoice.patient.email]
    assert AuditEvent.objects.filter(action="invoice.link_resent").exists()


def test_ops_dashboard_shows_open_balance_by_age(ops) -> None:
    for days, cents in [(5, 1_000), (45, 2_000), (75, 3_000), (120, 4_000), (130, 500)]:
        invoice = InvoiceFactory(amount_cents=cents)
        Invoice.objects.filter(pk=invoice.pk).update(issued_at=timezone.now() - timedelta(days=days))

    page = ops.get("/admin/dashboard/").content.decode()

    assert "Open balance by age: $105.00" in page
    for label, amount, count in [
        ("0–30 days", "$10.00", 1),
        ("31–60 days", "$20.00", 1),
        ("61–90 days", "$30.00", 1),
        ("90+ days", "$45.00", 2),
    ]:
        assert f"<td>{label}</td><td>{amount}</td><td>{count}</td>" in page
    assert "<svg" in page


def test_providers_cannot_open_the_ops_dashboard(two_providers) -> None:
    mine, *_ = two_providers
    assert provider_client(mine).get("/admin/dashboard/").status_code == 403


def test_a_provider_sees_only_payments_and_autopay_of_their_own_patients(two_providers) -> None:
    from payments.models import Payment, PaymentAllocation

    mine, theirs, my_invoice, their_invoice = two_providers
    for invoice, key in ((my_invoice, "mine"), (their_invoice, "theirs")):
        payment = PaymentFactory(
            patient=invoice.patient,
            amount_cents=invoice.amount_cents,
            attempt_key=key,
            status=Payment.Status.SUCCEEDED,
            card_last4="4242",
        )
        PaymentAllocationFactory(payment=payment, invoice=invoice, state=PaymentAllocation.State.SETTLED)
        enrollment = AutopayEnrollmentFactory(patient=invoice.patient, stripe_payment_method_id=f"pm_{key}")
        AutopayAttemptFactory(invoice=invoice, enrollment=enrollment)
    client = provider_client(mine)
    for url in ("/admin/payments/payment/", "/admin/payments/autopayenrollment/", "/admin/payments/autopayattempt/"):
        page = client.get(url).content.decode()
        assert "Mineson" in page and "Theirson" not in page, url


@pytest.mark.parametrize("page", ["eapauthorization", "eligibilitysnapshot", "therapysession"])
def test_a_providers_add_forms_offer_only_their_own_patients(two_providers, page: str) -> None:
    from tests.factories import CoverageFactory

    mine, _, my_invoice, their_invoice = two_providers
    CoverageFactory(patient=my_invoice.patient, member_id="MINE-1")
    CoverageFactory(patient=their_invoice.patient, member_id="THEIRS-1")
    form = provider_client(mine).get(f"/admin/invoices/{page}/add/").content.decode()
    assert "Theirson" not in form and "THEIRS-1" not in form
    assert "Mineson" in form or "MINE-1" in form


def test_a_payment_covering_two_providers_shows_each_only_their_share(two_providers) -> None:
    from payments.models import Payment, PaymentAllocation

    mine, theirs, my_invoice, _ = two_providers
    other = InvoiceFactory(session__patient=my_invoice.patient, session__provider=theirs, number="INV-OTHER-DR")
    payment = PaymentFactory(
        patient=my_invoice.patient, amount_cents=24_000, attempt_key="both", status=Payment.Status.SUCCEEDED
    )
    for invoice in (my_invoice, other):
        PaymentAllocationFactory(
            payment=payment, invoice=invoice, amount_cents=12_000, state=PaymentAllocation.State.SETTLED
        )
    page = provider_client(mine).get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert my_invoice.number in page
    assert "INV-OTHER-DR" not in page and "$240.00" not in page


def test_ops_filter_invoices_by_the_dashboards_age_buckets_and_see_patient_balances(ops) -> None:
    fresh = InvoiceFactory(amount_cents=1_000, session__patient=PatientFactory(last_name="Freshly"))
    old = InvoiceFactory(amount_cents=2_500, session__patient=PatientFactory(last_name="Oldham"))
    Invoice.objects.filter(pk=old.pk).update(issued_at=timezone.now() - timedelta(days=120))

    ninety_plus = ops.get("/admin/invoices/invoice/?age=3").content.decode()
    assert f">{old.number}</a>" in ninety_plus and f">{fresh.number}</a>" not in ninety_plus
    assert "90+ days" in ninety_plus

    patients = ops.get("/admin/invoices/patient/").content.decode()
    assert "$25.00" in patients and "$10.00" in patients
