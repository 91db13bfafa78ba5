"""Reads for the patient's pay pages: what can be paid, and the patient's payments."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from invoices.models import Invoice, Practice, TherapySession
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


# --- the summary page, in one query -----------------------------------------------------------------------------


def claim_status() -> Any:
    """claims' Claim.Status, reached through the session's `claim` relation as the templates reach it: payments sits
    below claims in the layers (pyproject.toml) and does not import it."""
    return TherapySession._meta.get_field("claim").related_model.Status  # type: ignore[attr-defined]


@dataclass(frozen=True)
class InvoiceLine:
    """An invoice as the pay pages show it: plain data, from an Invoice row or from the summary's one query."""

    id: int
    number: str
    kind: str
    status: str
    amount_cents: int
    credited_cents: int
    issued_at: datetime | None
    calculation: dict[str, Any]
    date_of_service: date
    provider: str  # the provider's display name
    claim_number: str  # "" without a claim (not an insurance visit)
    claim_status: str
    claim_decided_at: datetime | None

    @property
    def owed_cents(self) -> int:
        return self.amount_cents - self.credited_cents  # Invoice.owed_cents

    @classmethod
    def of(cls, invoice: Invoice) -> "InvoiceLine":
        """From an Invoice fetched with its session, claim and provider (invoices_for_patient)."""
        claim = getattr(invoice.session, "claim", None)
        return cls(
            id=invoice.pk,
            number=invoice.number,
            kind=invoice.kind,
            status=invoice.status,
            amount_cents=invoice.amount_cents,
            credited_cents=invoice.credited_cents,
            issued_at=invoice.issued_at,
            calculation=invoice.calculation,
            date_of_service=invoice.session.date_of_service,
            provider=invoice.provider.display_name,
            claim_number=claim.claim_number if claim is not None else "",
            claim_status=claim.status if claim is not None else "",
            claim_decided_at=claim.decided_at if claim is not None else None,
        )


@dataclass(frozen=True)
class ReceiptLine:
    """A payment under "Recent payments" (payments.receipts.receipts_for decides which)."""

    id: int
    succeeded_at: datetime | None
    card_brand: str
    card_last4: str
    refunded_cents: int
    paid_cents: int

    @property
    def reference(self) -> str:
        return f"PAY-{self.id:07d}"  # Payment.reference

    @classmethod
    def of(cls, payment: Payment) -> "ReceiptLine":
        return cls(
            id=payment.pk,
            succeeded_at=payment.succeeded_at,
            card_brand=payment.card_brand,
            card_last4=payment.card_last4,
            refunded_cents=payment.refunded_cents,
            paid_cents=getattr(payment, "paid_cents", 0) or 0,
        )


@dataclass(frozen=True)
class PracticeLine:
    """A practice of the patient's providers that offers autopay."""

    id: int
    name: str
    autopay_policy: str

    @classmethod
    def of(cls, practice: Practice) -> "PracticeLine":
        return cls(id=practice.pk, name=practice.name, autopay_policy=practice.autopay_policy)


@dataclass(frozen=True)
class PaySummary:
    """Everything the summary page reads: what can be paid (PayOptions' split), the receipts, the autopay
    practices."""

    payable: list[InvoiceLine]  # oldest first
    processing: list[InvoiceLine]
    receipts: list[ReceiptLine]  # newest first
    practices: list[PracticeLine]  # by name

    @property
    def most_recent(self) -> InvoiceLine | None:
        return self.payable[-1] if self.payable else None

    @property
    def total_cents(self) -> int:
        return sum(line.owed_cents for line in self.payable)


# pay_options_for, receipts_for and autopay_practices in one statement, as three JSON arrays. Building those three
# ORM queries cost the summary more Python than anything else on the page (~1 ms each unloaded); this text is built
# once. tests/payments/test_summary_query.py checks it reads exactly what the three selectors read.
_SUMMARY_SQL = """
SELECT
  (SELECT coalesce(json_agg(i ORDER BY i.date_of_service, i.id), '[]') FROM (
     SELECT inv.id, inv.number, inv.kind, inv.status, inv.amount_cents, inv.credited_cents, inv.issued_at,
            inv.calculation, s.date_of_service, pv.display_name AS provider,
            coalesce(c.claim_number, '') AS claim_number, coalesce(c.status, '') AS claim_status,
            c.decided_at AS claim_decided_at
       FROM invoices_invoice inv
       JOIN invoices_therapysession s ON s.id = inv.session_id
       JOIN invoices_provider pv ON pv.id = inv.provider_id
       LEFT JOIN claims_claim c ON c.session_id = s.id
      WHERE inv.patient_id = %(patient)s AND inv.status IN (%(open)s, %(processing)s)
  ) i),
  (SELECT coalesce(json_agg(r ORDER BY r.succeeded_at DESC, r.id DESC), '[]') FROM (
     SELECT pay.id, pay.succeeded_at, pay.card_brand, pay.card_last4, pay.refunded_cents,
            sum(a.amount_cents) AS paid_cents
       FROM payments_payment pay
       JOIN payments_paymentallocation a ON a.payment_id = pay.id AND a.state = %(settled)s
      WHERE pay.patient_id = %(patient)s AND pay.status = %(succeeded)s AND pay.succeeded_at >= %(since)s
      GROUP BY pay.id
     HAVING sum(a.amount_cents) > 0
      ORDER BY pay.succeeded_at DESC, pay.id DESC
      LIMIT %(receipts_max)s
  ) r),
  (SELECT coalesce(json_agg(p ORDER BY p.name), '[]') FROM (
     SELECT DISTINCT pr.id, pr.name, pr.autopay_policy
       FROM invoices_practice pr
       JOIN invoices_provider pv ON pv.practice_id = pr.id
       JOIN invoices_therapysession s ON s.provider_id = pv.id
      WHERE s.patient_id = %(patient)s AND pr.autopay_policy <> %(autopay_off)s
  ) p)
"""


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def pay_summary_for(*, patient_id: int) -> PaySummary:
    """The summary's reads in one query on PostgreSQL (elsewhere, the three selectors it stands for)."""
    if connection.vendor != "postgresql":  # the SQLite development default
        return pay_summary_from_selectors(patient_id=patient_id)
    from payments.receipts import RECEIPTS_LISTED_FOR, RECEIPTS_LISTED_MAX

    params: dict[str, Any] = {
        "patient": patient_id,
        "open": Invoice.Status.OPEN.value,
        "processing": Invoice.Status.PROCESSING.value,
        "settled": PaymentAllocation.State.SETTLED.value,
        "succeeded": Payment.Status.SUCCEEDED.value,
        "since": timezone.now() - RECEIPTS_LISTED_FOR,
        "receipts_max": RECEIPTS_LISTED_MAX,
        "autopay_off": Practice.AutopayPolicy.OFF.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SUMMARY_SQL, params)
        invoices, receipts, practices = cursor.fetchone()
    lines = [
        InvoiceLine(
            id=row["id"],
            number=row["number"],
            kind=row["kind"],
            status=row["status"],
            amount_cents=row["amount_cents"],
            credited_cents=row["credited_cents"],
            issued_at=_moment(row["issued_at"]),
            calculation=row["calculation"],
            date_of_service=date.fromisoformat(row["date_of_service"]),
            provider=row["provider"],
            claim_number=row["claim_number"],
            claim_status=row["claim_status"],
            claim_decided_at=_moment(row["claim_decided_at"]),
        )
        for row in invoices
    ]
    return PaySummary(
        payable=[line for line in lines if line.status == Invoice.Status.OPEN],
        processing=[line for line in lines if line.status == Invoice.Status.PROCESSING],
        receipts=[
            ReceiptLine(
                id=row["id"],
                succeeded_at=_moment(row["succeeded_at"]),
                card_brand=row["card_brand"],
                card_last4=row["card_last4"],
                refunded_cents=row["refunded_cents"],
                paid_cents=row["paid_cents"],
            )
            for row in receipts
        ],
        practices=[
            PracticeLine(id=row["id"], name=row["name"], autopay_policy=row["autopay_policy"]) for row in practices
        ],
    )


def pay_summary_from_selectors(*, patient_id: int) -> PaySummary:
    """What pay_summary_for reads, from pay_options_for, receipts_for and autopay_practices (three queries)."""
    from payments.autopay import autopay_practices
    from payments.receipts import receipts_for

    options = pay_options_for(patient_id=patient_id)
    return PaySummary(
        payable=[InvoiceLine.of(i) for i in options.payable],
        processing=[InvoiceLine.of(i) for i in options.processing],
        receipts=[ReceiptLine.of(p) for p in receipts_for(patient_id=patient_id)],
        practices=[PracticeLine.of(p) for p in autopay_practices(patient_id=patient_id)],
    )
