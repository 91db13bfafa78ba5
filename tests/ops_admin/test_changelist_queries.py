"""Every admin changelist ops or a provider can open runs the same number of SQL queries with 1 row as with 10
(an N+1 shows as a count that grows with the rows; tests/payments/test_queries.py pins the patient pages the same
way). A new ModelAdmin in our apps fails `test_every_changelist_staff_can_open_is_pinned` until it has a row here."""

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from claims.models import Claim, ClaimPayment, Remittance
from invoices.models import Invoice, Provider, ReminderLog, ReminderRun
from payments.models import AutopayAttempt, Payment, PaymentAllocation, StripeEvent
from tests.factories import (
    AutopayAttemptFactory,
    AutopayEnrollmentFactory,
    EapAuthorizationFactory,
    EligibilitySnapshotFactory,
    InvoiceFactory,
    PaymentAllocationFactory,
    PaymentFactory,
    PracticeFactory,
    ProviderFactory,
)

pytestmark = pytest.mark.django_db


def _invoice(provider: Provider) -> Invoice:
    """An invoice of the provider's, for a patient of its own (so each row brings its own related rows)."""
    return InvoiceFactory(session__provider=provider)


def _reminded(invoice: Invoice) -> ReminderLog:
    return ReminderLog.objects.create(
        patient=invoice.patient,
        sent_on=timezone.localdate(),
        status=ReminderLog.Status.SENT,
        invoice_ids=[invoice.pk],
        total_cents=invoice.amount_cents,
        sent_at=timezone.now(),
    )


def _paid(invoice: Invoice) -> Payment:
    payment = PaymentFactory(
        patient=invoice.patient,
        amount_cents=invoice.amount_cents,
        status=Payment.Status.SUCCEEDED,
        card_brand="visa",
        card_last4="4242",
    )
    PaymentAllocationFactory(payment=payment, invoice=invoice, state=PaymentAllocation.State.SETTLED)
    return payment


def _claim(invoice: Invoice) -> Claim:
    return Claim.objects.create(session=invoice.session, claim_number=f"CLM-Q{invoice.pk}")


def audit_event(provider: Provider) -> None:
    invoice = _invoice(provider)
    AuditEvent.objects.create(
        actor=provider.user, actor_label=f"user:{provider.user.pk}", action="invoice.viewed", object_type="invoice",
        object_id=str(invoice.pk), ip_address="198.51.100.7",
    )  # fmt: skip


def practice(provider: Provider) -> None:
    PracticeFactory()


def provider_row(provider: Provider) -> None:
    ProviderFactory(practice=provider.practice)


def patient(provider: Provider) -> None:
    _reminded(_invoice(provider))


def eligibility(provider: Provider) -> None:
    EligibilitySnapshotFactory(coverage__patient=_invoice(provider).patient)


def eap(provider: Provider) -> None:
    EapAuthorizationFactory(patient=_invoice(provider).patient)


def session(provider: Provider) -> None:
    _invoice(provider)


def invoice(provider: Provider) -> None:
    _reminded(_invoice(provider))


def reminder_run(provider: Provider) -> None:
    ReminderRun.objects.create(as_of=date.today(), started_at=timezone.now(), finished_at=timezone.now())


def reminder_log(provider: Provider) -> None:
    _reminded(_invoice(provider))


def payment(provider: Provider) -> None:
    _paid(_invoice(provider))


def stripe_event(provider: Provider) -> None:
    n = StripeEvent.objects.count()
    StripeEvent.objects.create(event_id=f"evt_query_{n}", type="payment_intent.succeeded", payload={"id": n})


def enrollment(provider: Provider) -> None:
    bill = _invoice(provider)
    enrolled = AutopayEnrollmentFactory(patient=bill.patient)
    AutopayAttemptFactory(
        invoice=bill, enrollment=enrolled, status=AutopayAttempt.Status.FAILED, finished_at=timezone.now()
    )


def attempt(provider: Provider) -> None:
    bill = _invoice(provider)
    AutopayAttemptFactory(
        invoice=bill, payment=_paid(bill), status=AutopayAttempt.Status.SUCCEEDED, finished_at=timezone.now()
    )


def claim(provider: Provider) -> None:
    _claim(_invoice(provider))


def remittance(provider: Provider) -> None:
    found = _claim(_invoice(provider))
    n = Remittance.objects.count()
    received = Remittance.objects.create(
        file_name=f"era-{n}.835", raw_text="", trace_number=f"TRN{n:05d}", payer_name="Blue Harbor", payer_id="BH1"
    )
    for line, status_code in enumerate(("1", "22")):
        ClaimPayment.objects.create(
            remittance=received, claim=found, trace_number=received.trace_number, claim_number=found.claim_number,
            status_code=status_code, charge_cents=15_000, paid_cents=12_000, patient_responsibility_cents=3_000,
            payer_claim_number=f"PCN{n}-{line}", outcome=ClaimPayment.Outcome.CONFIRMED, note="",
        )  # fmt: skip


# changelist -> one more row of it, the provider's (ops see every row; the provider sees their own).
ROWS: dict[str, Callable[[Provider], None]] = {
    "/admin/core/auditevent/": audit_event,
    "/admin/invoices/practice/": practice,
    "/admin/invoices/provider/": provider_row,
    "/admin/invoices/patient/": patient,
    "/admin/invoices/eligibilitysnapshot/": eligibility,
    "/admin/invoices/eapauthorization/": eap,
    "/admin/invoices/therapysession/": session,
    "/admin/invoices/invoice/": invoice,
    "/admin/invoices/reminderrun/": reminder_run,
    "/admin/invoices/reminderlog/": reminder_log,
    "/admin/payments/payment/": payment,
    "/admin/payments/stripeevent/": stripe_event,
    "/admin/payments/autopayenrollment/": enrollment,
    "/admin/payments/autopayattempt/": attempt,
    "/admin/claims/claim/": claim,
    "/admin/claims/remittance/": remittance,
}
OPS_ONLY = {
    "/admin/core/auditevent/",
    "/admin/invoices/practice/",
    "/admin/invoices/reminderrun/",
    "/admin/payments/stripeevent/",
    "/admin/claims/remittance/",
}
OUR_APPS = {"core", "invoices", "payments", "claims"}


def _measure(client: Client, url: str) -> tuple[int, int, list[str]]:
    """(rows listed, queries run, their SQL), after a warm-up request so each size is measured in the same state."""
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.context["cl"].result_count, len(captured), [q["sql"] for q in captured.captured_queries]


def _pinned(client: Client, url: str, provider: Provider, *, own_row_only: bool = False) -> None:
    build = ROWS[url]
    build(provider)
    rows_1, queries_1, sql_1 = _measure(client, url)
    for _ in range(9):
        build(provider)
    rows_10, queries_10, sql_10 = _measure(client, url)
    assert rows_10 == (rows_1 if own_row_only else rows_1 + 9), (url, rows_1, rows_10)
    assert queries_10 == queries_1, "\n".join([f"{url}: {queries_1} -> {queries_10} queries", *sql_10])


@pytest.mark.parametrize("url", sorted(ROWS))
def test_an_ops_changelist_runs_as_many_queries_for_10_rows_as_for_1(url: str, ops: Client, provider: Any) -> None:
    _pinned(ops, url, provider)


@pytest.mark.parametrize("url", sorted(set(ROWS) - OPS_ONLY))
def test_a_providers_changelist_runs_as_many_queries_for_10_rows_as_for_1(
    url: str, provider_client: Client, provider: Any
) -> None:
    # A provider's own changelist of providers lists only themselves, however many colleagues are added.
    _pinned(provider_client, url, provider, own_row_only=url == "/admin/invoices/provider/")


def test_every_changelist_staff_can_open_is_pinned(ops: Client, provider_client: Client) -> None:
    opened: dict[str, set[str]] = {"ops": set(), "provider": set()}
    for model in admin.site._registry:
        if model._meta.app_label not in OUR_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for who, client in (("ops", ops), ("provider", provider_client)):
            if client.get(url).status_code == 200:
                opened[who].add(url)
    assert opened == {"ops": set(ROWS), "provider": set(ROWS) - OPS_ONLY}
