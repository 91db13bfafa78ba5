"""A patient shared by two providers of different practices: each provider sees only their own part, everywhere.

In behavioural health, that a patient also sees a second therapist is itself private. Provider A must learn nothing
of provider B's invoices, sessions, payments, reminders, practice or amounts from any admin page, filter or search.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format

from alma_billing.core.models import AuditEvent
from invoices.models import Invoice, Patient, Practice, Provider, ReminderLog, TherapySession
from payments.autopay import consent_text
from payments.models import AutopayAttempt, AutopayEnrollment, Payment, PaymentAllocation
from tests.factories import (
    AutopayAttemptFactory,
    AutopayEnrollmentFactory,
    EapAuthorizationFactory,
    InvoiceFactory,
    PatientFactory,
    PaymentAllocationFactory,
    PaymentFactory,
    PracticeFactory,
    ProviderFactory,
    UserFactory,
)
from tests.staff import signed_in

pytestmark = pytest.mark.django_db


@dataclass
class Shared:
    patient: Patient
    a: Provider
    b: Provider
    a_open: Invoice
    a_paid: Invoice
    b_open: Invoice
    b_paid: Invoice
    payment: Payment
    mixed_log: ReminderLog
    b_only_log: ReminderLog
    enrollment: AutopayEnrollment

    def forbidden(self) -> list[str]:
        """Text that would tell provider A anything about provider B's care of the patient."""
        b_only_day = date_format(self.b_only_log.sent_on, "DATE_FORMAT")
        return [
            self.b_open.number,
            self.b_paid.number,
            "Dr. Bravo",
            "dr-bravo",
            "Yonder Counseling",
            "$345.00",  # B's open invoice
            "$77.00",  # B's paid invoice
            "$465.00",  # the patient's whole open balance
            "$127.00",  # the whole payment (A's $50 + B's $77)
            "$422.00",  # the B-only reminder total (345 + 77)
            b_only_day,
        ]


def _shown(url: str, response: Any) -> str:
    """The page, without the search term echoed back in the search box and links (that is the user's own input)."""
    page = response.content.decode()
    term = parse_qs(urlsplit(url).query).get("q", [""])[0]
    for echo in (f'value="{term}"', f"q={term}", f"q%3D{term}"):
        page = page.replace(echo, "") if term else page
    return page


def _result_count(client: Client, url: str) -> int:
    return int(client.get(url).context["cl"].result_count)


def _login(provider: Provider) -> Client:
    provider.user.groups.add(Group.objects.get(name="Providers"))
    return signed_in(provider.user)


@pytest.fixture
def shared() -> Shared:
    a = ProviderFactory(
        display_name="Dr. Alpha",
        user=UserFactory(username="dr-alpha"),
        practice=PracticeFactory(name="Alder Therapy", autopay_policy=Practice.AutopayPolicy.OPTIONAL),
    )
    b = ProviderFactory(
        display_name="Dr. Bravo",
        user=UserFactory(username="dr-bravo"),
        practice=PracticeFactory(name="Yonder Counseling", autopay_policy=Practice.AutopayPolicy.REQUIRED),
    )
    patient = PatientFactory(first_name="Robin", last_name="Sharedperson")
    today = timezone.localdate()

    def invoice(provider: Provider, number: str, cents: int, days_ago: int) -> Invoice:
        return InvoiceFactory(
            number=number,
            amount_cents=cents,
            session__patient=patient,
            session__provider=provider,
            session__date_of_service=today - timedelta(days=days_ago),
        )

    a_open = invoice(a, "INV-ALPHA01", 12_000, 20)
    a_paid = invoice(a, "INV-ALPHA02", 5_000, 30)
    b_open = invoice(b, "INV-BRAVO01", 34_500, 5)
    b_paid = invoice(b, "INV-BRAVO02", 7_700, 25)
    Invoice.objects.filter(pk__in=[a_paid.pk, b_paid.pk]).update(status=Invoice.Status.PAID, paid_at=timezone.now())

    payment = PaymentFactory(
        patient=patient,
        amount_cents=12_700,
        attempt_key="shared-payment",
        status=Payment.Status.SUCCEEDED,
        stripe_payment_intent_id="pi_shared_0001",
        card_brand="visa",
        card_last4="4242",
    )
    for paid in (a_paid, b_paid):
        PaymentAllocationFactory(payment=payment, invoice=paid, state=PaymentAllocation.State.SETTLED)

    mixed_log = ReminderLog.objects.create(
        patient=patient,
        sent_on=today - timedelta(days=12),
        status=ReminderLog.Status.SENT,
        invoice_ids=sorted([a_open.pk, b_paid.pk]),
        total_cents=12_000 + 7_700,
        sent_at=timezone.now(),
    )
    b_only_log = ReminderLog.objects.create(
        patient=patient,
        sent_on=today - timedelta(days=2),
        status=ReminderLog.Status.SENT,
        invoice_ids=sorted([b_open.pk, b_paid.pk]),
        total_cents=34_500 + 7_700,
        sent_at=timezone.now(),
    )

    enrollment = AutopayEnrollmentFactory(
        patient=patient,
        stripe_payment_method_id="pm_shared",
        consent_text=consent_text(practices=[a.practice, b.practice]),
    )
    AutopayAttemptFactory(
        invoice=b_open,
        enrollment=enrollment,
        status=AutopayAttempt.Status.FAILED,
        failure_message="Your card was declined.",
        finished_at=timezone.now(),
    )

    # Provider B edited the shared patient (admin history) and acted on their own invoice (audit trail).
    LogEntry.objects.create(
        user=b.user,
        content_type=ContentType.objects.get_for_model(Patient),
        object_id=str(patient.pk),
        object_repr=str(patient),
        action_flag=CHANGE,
        change_message="Changed email.",
    )
    AuditEvent.objects.create(
        actor=b.user,
        actor_label=f"user:{b.user.pk}",
        action="invoice.link_resent",
        object_type="invoices.invoice",
        object_id=str(b_open.pk),
    )
    return Shared(patient, a, b, a_open, a_paid, b_open, b_paid, payment, mixed_log, b_only_log, enrollment)


def _pages(s: Shared) -> list[str]:
    p = s.patient.pk
    return [
        "/admin/",
        "/admin/invoices/patient/",
        f"/admin/invoices/patient/?q={s.b_open.number}",
        "/admin/invoices/patient/?o=4",
        "/admin/invoices/patient/?o=-4",
        f"/admin/invoices/patient/{p}/change/",
        f"/admin/invoices/patient/{p}/history/",
        "/admin/invoices/invoice/",
        f"/admin/invoices/invoice/?q={s.b_open.number}",
        f"/admin/invoices/invoice/?provider__id__exact={s.b.pk}",
        f"/admin/invoices/invoice/?practice__id__exact={s.b.practice_id}",
        f"/admin/invoices/invoice/{s.a_open.pk}/change/",
        f"/admin/invoices/invoice/{s.a_paid.pk}/change/",
        "/admin/invoices/therapysession/",
        f"/admin/invoices/therapysession/?q={s.b_open.number}",
        f"/admin/invoices/therapysession/{s.a_open.session_id}/change/",
        "/admin/invoices/reminderlog/",
        f"/admin/invoices/reminderlog/{s.mixed_log.pk}/change/",
        "/admin/invoices/eligibilitysnapshot/",
        "/admin/invoices/eapauthorization/",
        "/admin/invoices/provider/",
        "/admin/payments/payment/",
        f"/admin/payments/payment/?q={s.b_paid.number}",
        f"/admin/payments/payment/{s.payment.pk}/change/",
        "/admin/payments/autopayenrollment/",
        f"/admin/payments/autopayenrollment/{s.enrollment.pk}/change/",
        f"/admin/payments/autopayenrollment/?practice={s.b.practice_id}",
        "/admin/payments/autopayattempt/",
        f"/admin/payments/autopayattempt/?q={s.b_open.number}",
        "/admin/dashboard/",
        "/admin/autocomplete/?term=INV&app_label=invoices&model_name=therapysession&field_name=patient",
        f"/admin/autocomplete/?term={s.b_open.number}&app_label=invoices&model_name=therapysession&field_name=patient",
    ]


def test_provider_a_sees_nothing_of_provider_bs_care_of_a_shared_patient(shared: Shared) -> None:
    client = _login(shared.a)
    leaks = []
    for url in _pages(shared):
        response = client.get(url)
        assert response.status_code < 500, url
        page = _shown(url, response)
        leaks += [(url, text) for text in shared.forbidden() if text in page]
    assert leaks == []


def test_provider_a_sees_their_own_part_of_the_shared_patient(shared: Shared) -> None:
    client = _login(shared.a)
    patients = client.get("/admin/invoices/patient/").content.decode()
    assert "Sharedperson" in patients and "$120.00" in patients  # A's open invoice only
    assert date_format(shared.mixed_log.sent_on, "DATE_FORMAT") in patients  # the last reminder that was A's too
    logs = client.get("/admin/invoices/reminderlog/").content.decode()
    assert "$120.00" in logs  # A's share of the mixed reminder, not $197.00
    payment = client.get(f"/admin/payments/payment/{shared.payment.pk}/change/").content.decode()
    assert shared.a_paid.number in payment and "$50.00" in payment
    assert "Your card was declined." not in client.get("/admin/payments/autopayenrollment/").content.decode()


def test_a_search_for_the_other_providers_invoice_number_finds_nothing(shared: Shared) -> None:
    client = _login(shared.a)
    for url in (
        f"/admin/invoices/patient/?q={shared.b_open.number}",
        f"/admin/invoices/invoice/?q={shared.b_open.number}",
        f"/admin/invoices/therapysession/?q={shared.b_open.number}",
        f"/admin/payments/payment/?q={shared.b_paid.number}",
        f"/admin/payments/autopayattempt/?q={shared.b_open.number}",
        f"/admin/invoices/reminderlog/?q={shared.b_open.number}",
    ):
        assert _result_count(client, url) == 0, url
    # The own invoice number still finds the patient and the payment.
    assert _result_count(client, f"/admin/invoices/patient/?q={shared.a_open.number}") == 1
    assert _result_count(client, f"/admin/payments/payment/?q={shared.a_paid.number}") == 1


def test_the_reminder_about_only_the_other_providers_invoices_is_not_theirs(shared: Shared) -> None:
    client = _login(shared.a)
    assert client.get(f"/admin/invoices/reminderlog/{shared.b_only_log.pk}/change/").status_code == 302
    page = client.get(f"/admin/invoices/reminderlog/{shared.mixed_log.pk}/change/").content.decode()
    assert "$197.00" not in page and "$120.00" in page


def test_a_shared_eap_authorization_shows_a_provider_only_their_own_sessions(shared: Shared) -> None:
    authorization = EapAuthorizationFactory(patient=shared.patient, sessions_authorized=6, sessions_used=3)
    TherapySession.objects.filter(pk__in=[shared.a_open.session_id]).update(eap_authorization=authorization)
    TherapySession.objects.filter(pk__in=[shared.b_open.session_id, shared.b_paid.session_id]).update(
        eap_authorization=authorization
    )
    client = _login(shared.a)
    listing = client.get("/admin/invoices/eapauthorization/").content.decode()
    assert '<td class="field-own_sessions_used">1</td>' in listing and "field-sessions_used" not in listing
    page = client.get(f"/admin/invoices/eapauthorization/{authorization.pk}/change/").content.decode()
    assert "Sessions with you" in page and 'name="sessions_used"' not in page and "Sessions used" not in page


def test_ops_keep_seeing_the_whole_patient(shared: Shared) -> None:
    user = get_user_model().objects.create_user("ops-scope", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    client = signed_in(user)
    patients = client.get("/admin/invoices/patient/").content.decode()
    assert "$465.00" in patients
    assert date_format(shared.b_only_log.sent_on, "DATE_FORMAT") in patients
    assert _result_count(client, f"/admin/invoices/patient/?q={shared.b_open.number}") == 1
    payment = client.get(f"/admin/payments/payment/{shared.payment.pk}/change/").content.decode()
    assert "$127.00" in payment and shared.b_paid.number in payment
    logs = client.get("/admin/invoices/reminderlog/").content.decode()
    assert "$422.00" in logs and "$197.00" in logs
    history = client.get(f"/admin/invoices/patient/{shared.patient.pk}/history/").content.decode()
    assert "dr-bravo" in history
