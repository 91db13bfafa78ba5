"""`{{ amount_cents|cents }}` in templates: the same formatting as everywhere else."""

from django import template

from alma_billing.core.money import format_cents

register = template.Library()


@register.filter
def cents(value: int) -> str:
    return format_cents(int(value))
