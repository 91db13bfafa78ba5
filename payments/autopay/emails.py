"""Autopay emails: the notice before a charge and the word that a charge did not go through."""

from django.utils.functional import Promise

from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from invoices.models import Invoice
from verification.services import pay_link_email_context


def autopay_email_send(invoice: Invoice, template: str, subject: str | Promise, **extra: object) -> None:
    """Email the patient about this invoice in their language, with the pay link (a way to pay by hand)."""
    _, context = pay_link_email_context(patient=invoice.patient, invoice=invoice)
    context.update(number=invoice.number, amount=format_cents(invoice.owed_cents), **extra)
    send_patient_email(
        to=invoice.patient.email,
        subject=subject,
        template=template,
        context=context,
        language=invoice.patient.preferred_language,
    )
