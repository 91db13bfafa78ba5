"""What the pay pages show of an invoice or a receipt, prepared in Python once per row.

The summary used to include a partial template per invoice, which included two more (claim number, credit) and
rendered four to six {% blocktranslate %} tags, each resolving its variables through the template engine (and
Django's lookup calls dir() on every miss, such as a session without a claim). Here each sentence is the same
catalog entry, translated with gettext and filled with escaped values exactly as {% blocktranslate %} fills them
(the translation itself is trusted, the values are escaped), so the pages read word for word as before and the
templates only loop over finished strings (templates/payments/_invoice_rows.html).
"""

from dataclasses import dataclass

from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from alma_billing.core.money import format_cents
from alma_billing.core.templatetags.patient_dates import day_text
from invoices.explain import explanation_lines
from invoices.models import Invoice
from payments.rules import card_label
from payments.selectors import InvoiceLine, ReceiptLine, claim_status


def _sentence(msgid: str, **values: str) -> SafeString:
    """gettext(msgid) % the escaped values: what {% blocktranslate with ... %} renders for the same msgid."""
    return mark_safe(gettext(msgid) % {key: conditional_escape(value) for key, value in values.items()})  # noqa: S308


@dataclass(frozen=True)
class InvoiceRow:
    """One invoice as the summary, Details and invoice pages show it."""

    line: InvoiceLine
    number: str
    provider: str  # the provider's display name
    amount: str  # what paying it costs, formatted
    day: str  # the visit's day, short style
    heading: SafeString  # "Visit on Dec 1, 2026 · $120.00"
    label: SafeString  # "Invoice INV-..."
    claim_number: SafeString  # "Claim number ..." or "" (P13)
    claim_decision: SafeString  # what the plan decided, or that it has not yet
    credit: SafeString  # the plan's credit on this invoice, or ""
    explanation: list[str]
    open: bool
    processing: bool
    pay_label: SafeString  # "Pay this invoice ($120.00)" (Details)


def invoice_row(invoice: Invoice | InvoiceLine) -> InvoiceRow:
    line = invoice if isinstance(invoice, InvoiceLine) else InvoiceLine.of(invoice)
    amount = format_cents(line.owed_cents)
    day = day_text(line.date_of_service)
    claim_number = claim_decision = SafeString("")
    if line.claim_number:  # P13: an insurance visit's claim, and what the plan decided
        claim_number = _sentence("Claim number %(number)s", number=line.claim_number)
        issued = day_text(line.issued_at)
        if line.kind == Invoice.Kind.ADJUSTMENT:
            claim_decision = _sentence("Adjustment from your plan's decision on %(issued)s", issued=issued)
        else:
            status = claim_status()
            if line.claim_status == status.CONFIRMED:
                decided = _sentence("Confirmed by your plan on %(day)s", day=day_text(line.claim_decided_at))
            elif line.claim_status == status.ADJUSTED:
                decided = _sentence("Updated to your plan's decision on %(day)s", day=day_text(line.claim_decided_at))
            else:
                decided = _sentence("Your plan has not decided this claim yet")
            claim_decision = mark_safe(_sentence("Estimated on %(issued)s", issued=issued) + " · " + decided)  # noqa: S308
    credit = SafeString("")
    if line.credited_cents:
        credit = _sentence(
            "Your plan decided you owe less: %(credit)s was taken off the %(issued)s first billed. You owe %(owed)s "
            "for this invoice.",
            credit=format_cents(line.credited_cents),
            issued=format_cents(line.amount_cents),
            owed=amount,
        )
    return InvoiceRow(
        line=line,
        number=line.number,
        provider=line.provider,
        amount=amount,
        day=day,
        heading=_sentence("Visit on %(date)s · %(amount)s", date=day, amount=amount),
        label=_sentence("Invoice %(number)s", number=invoice.number),
        claim_number=claim_number,
        claim_decision=claim_decision,
        credit=credit,
        explanation=explanation_lines(line.calculation),
        open=line.status == Invoice.Status.OPEN,
        processing=line.status == Invoice.Status.PROCESSING,
        pay_label=_sentence("Pay this invoice (%(amount)s)", amount=amount),
    )


@dataclass(frozen=True)
class ReceiptRow:
    """One payment under "Recent payments" (P8)."""

    payment_id: int
    line: SafeString  # "Dec 1, 2026 · PAY-0000001 · Visa ending in 4242"
    paid: str  # " · $180.00" or ""
    refund: SafeString  # "Refunded to your card: ..." or ""


def receipt_row(payment: ReceiptLine) -> ReceiptRow:
    paid_cents = payment.paid_cents
    refund = SafeString("")
    if payment.refunded_cents:
        refund = _sentence(
            "Refunded to your card: %(amount)s. The receipt shows it.", amount=format_cents(payment.refunded_cents)
        )
    return ReceiptRow(
        payment_id=payment.id,
        line=_sentence(
            "%(date)s · %(reference)s · %(card)s",
            date=day_text(payment.succeeded_at),
            reference=payment.reference,
            card=str(card_label(payment.card_brand, payment.card_last4)),
        ),
        paid=format_cents(paid_cents) if paid_cents else "",
        refund=refund,
    )
