"""How a card is named on patient pages: `{% load card_labels %}` then `{{ payment|card_label }}`."""

from typing import Any

from django import template

from payments import rules

register = template.Library()


@register.filter
def card_label(card: Any) -> str:
    """`{{ payment|card_label }}`, `{{ enrollment|card_label }}`: "Visa ending in 4242" (payments.rules)."""
    return str(rules.card_label(card.card_brand, card.card_last4))
