"""Reads for the patient's pay pages: what can be paid, and the patient's payments."""

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from invoices.models import Invoice
from invoices.selectors import invoices_for_patient
from payments.models import AutopayAttempt, Payment, PaymentAllocation


@dataclass(frozen=True)
class PayOptions:
    """P10-P12: what the summary offers. `payable` is oldest first; `most_recent` is the latest session's."""

    payable: list[Invoice]
    processing: list[Invoice]

    @property
    def most_recent(self) -> Invoice | None:
        return self.payable[-1] if self.payable else None

    @property
    def total_cents(self) -> int:
        return sum(invoice.owed_cents for invoice in self.payable)


# What the summary and Details pages show of an invoice; fetching only this keeps the query and the ORM cheap.
SUMMARY_FIELDS = (
    "id",
    "number",
    "amount_cents",
    "credited_cents",
    "kind",
    "issued_at",
    "status",
    "calculation",
    "patient_id",
    "practice_id",
    "session__id",
    "session__date_of_service",
    "session__claim__claim_number",
    "session__claim__status",
    "session__claim__decided_at",
    "provider__id",
    "provider__display_name",
)


def pay_options_for(*, patient_id: int) -> PayOptions:
    """One query whatever the number of invoices."""
    invoices = list(
        invoices_for_patient(patient_id=patient_id)
        .filter(status__in=[Invoice.Status.OPEN, Invoice.Status.PROCESSING])
        .only(*SUMMARY_FIELDS)
    )
    return PayOptions(
        payable=[i for i in invoices if i.status == Invoice.Status.OPEN],
        processing=[i for i in invoices if i.status == Invoice.Status.PROCESSING],
    )


def payments_for(*, patient_id: int) -> QuerySet[Payment]:
    allocations = PaymentAllocation.objects.select_related("invoice__session", "invoice__provider").order_by(
        "invoice__session__date_of_service"
    )
    return (
        Payment.objects.filter(patient_id=patient_id)
        .prefetch_related(Prefetch("allocations", queryset=allocations))
        .order_by("-created_at", "-id")
    )


def payment_for_patient(*, patient_id: int, payment_id: int) -> Payment | None:
    """A payment only if it is this patient's: another patient's id is simply not found."""
    return payments_for(patient_id=patient_id).filter(pk=payment_id).first()


def autopay_charges_for(*, patient_id: int) -> list[AutopayAttempt]:
    """Every automatic charge attempt, newest first, with its invoice and outcome (for the patient's summary)."""
    return list(
        AutopayAttempt.objects.filter(invoice__patient_id=patient_id)
        .select_related("invoice", "enrollment")
        .order_by("-scheduled_for", "-id")[:20]
    )


def recent_payments_for(*, patient_id: int) -> list[Payment]:
    """The patient's receipts for the summary: see payments.receipts.receipts_for (two years, one query)."""
    from payments.receipts import receipts_for

    return receipts_for(patient_id=patient_id)
