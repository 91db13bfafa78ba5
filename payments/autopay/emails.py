"""Autopay emails: the notice before a charge and the word that a charge did not go through."""

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from invoices.models import Invoice
from verification.services import pay_link_email_context


def _card_words(brand: str, last4: str) -> Promise:
    """ "Visa ending in 4242", rendered in the email's language."""
    return format_lazy(gettext_lazy("{brand} ending in {last4}"), brand=brand.title(), last4=last4)


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
