"""Patient messages stored as English sentences or codes, shown in the page's language."""

from typing import Any

from django import template
from django.utils.translation import gettext

from payments.gateways.stripe import failure_message_for

register = template.Library()


@register.filter
def payment_failure(payment: Any) -> str:
    """`{{ payment|payment_failure }}`: why a payment failed, from its failure code."""
    return failure_message_for(payment.failure_code, payment.failure_message)


@register.filter
def patient_message(stored: str) -> str:
    """`{{ attempt.failure_message|patient_message }}`: a sentence we stored in English, translated when the
    catalog has it (every sentence we store is a catalog entry), else as stored."""
    return gettext(stored) if stored else ""
