"""P8: receipts a patient can submit to an FSA, HSA or HRA: a discreet email and an itemized PDF."""

import logging

from django.db import transaction
from django.utils import timezone
from fpdf import FPDF

from alma_billing.core.audit import SYSTEM, audit_record
from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from claims.selectors import claim_numbers_for
from payments.models import Payment, PaymentAllocation

logger = logging.getLogger(__name__)

FSA_STATEMENT = (
    "This receipt shows payment for services received and may be submitted to your FSA, HSA or HRA for reimbursement."
)


def _latin1(text: str) -> str:
    """The PDF core fonts are Latin-1; replace anything else rather than fail a receipt."""
    return text.encode("latin-1", "replace").decode("latin-1")


def settled_cents(payment: Payment) -> int:
    """What the payment actually paid; a share that duplicated another payment was refunded."""
    settled = PaymentAllocation.objects.filter(payment=payment, state=PaymentAllocation.State.SETTLED)
    return sum(settled.values_list("amount_cents", flat=True))


def receipt_pdf(payment: Payment) -> bytes:
    """An itemized receipt: each invoice's date of service, provider and NPI, CPT code and amount."""
    allocations = list(
        PaymentAllocation.objects.filter(payment=payment, state=PaymentAllocation.State.SETTLED)
        .select_related("invoice__session", "invoice__provider")
        .order_by("invoice__session__date_of_service", "invoice_id")
    )
    patient = payment.patient
    paid_on = timezone.localtime(payment.succeeded_at or payment.created_at)
    pdf = FPDF(format="Letter")
    pdf.set_title(f"Receipt {payment.reference}")
    pdf.set_author("Alma Billing")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, "Payment receipt", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    rows = [
        ("Receipt", payment.reference),
        ("Patient", f"{patient.first_name} {patient.last_name}"),
        ("Payment date", f"{paid_on:%B %-d, %Y}"),
        ("Paid with", f"{payment.card_brand.title() or 'Card'} ending in {payment.card_last4 or '----'}"),
        ("Amount paid", format_cents(sum(a.amount_cents for a in allocations))),
    ]
    for label, value in rows:
        pdf.cell(45, 7, _latin1(label))
        pdf.cell(0, 7, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    widths = (30, 28, 62, 30, 18, 26)
    headers = ("Invoice", "Date of service", "Provider", "NPI", "CPT", "Amount")
    for width, header in zip(widths, headers, strict=True):
        pdf.cell(width, 8, header, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for allocation in allocations:
        invoice = allocation.invoice
        cells = (
            invoice.number,
            f"{invoice.session.date_of_service:%m/%d/%Y}",
            invoice.provider.display_name[:34],
            invoice.provider.npi,
            invoice.session.cpt_code,
            format_cents(allocation.amount_cents),
        )
        for width, cell in zip(widths, cells, strict=True):
            pdf.cell(width, 7, _latin1(cell))
        pdf.ln()
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(sum(widths[:-1]), 8, "Total paid", border="T")
    pdf.cell(widths[-1], 8, format_cents(sum(a.amount_cents for a in allocations)), border="T")
    pdf.ln(14)
    pdf.set_font("Helvetica", size=10)
    claims = claim_numbers_for(session_ids={a.invoice.session_id for a in allocations})
    if claims:  # P13: what the patient quotes to their plan, FSA or HSA
        numbers = sorted(set(claims.values()))
        text = f"Insurance claim number{'s' if len(numbers) > 1 else ''}: {', '.join(numbers)}."
        pdf.multi_cell(0, 6, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, FSA_STATEMENT)
    if payment.refunded_cents:
        pdf.multi_cell(0, 6, f"Refunded to your card: {format_cents(payment.refunded_cents)}.")
    return bytes(pdf.output())


def receipt_email_send(*, payment_id: int) -> bool:
    """Email the patient that the payment went through, once. Discreet: no provider, no clinical words."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).select_related("patient").get(pk=payment_id)
        if payment.status != Payment.Status.SUCCEEDED or payment.receipt_emailed_at or not payment.patient.email:
            return False
        settled = settled_cents(payment)
        if settled == 0:
            return False  # everything it covered was already paid: it was refunded in full, there is no receipt
        context = {
            "first_name": payment.patient.first_name,
            "amount": format_cents(settled),
            "refunded": format_cents(payment.amount_cents - settled) if settled < payment.amount_cents else "",
            "reference": payment.reference,
            "card": f"{payment.card_brand.title() or 'Card'} ending in {payment.card_last4}",
            "paid_on": timezone.localtime(payment.succeeded_at or payment.created_at),
        }
        send_patient_email(
            to=payment.patient.email,
            subject="Your payment to Alma was received",
            template="emails/payment_receipt",
            context=context,
        )
        payment.receipt_emailed_at = timezone.now()
        payment.save(update_fields=["receipt_emailed_at"])
        audit_record(actor=SYSTEM, action="payment.receipt_emailed", obj=payment)
    return True
