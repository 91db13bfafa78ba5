"""`{{ value|day:"short" }}` in patient templates and emails: a date in the active language's own order
("Dec 1, 2026" / "1 dic 2026"). English keeps the exact formats the pages always had."""

from datetime import date

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils.translation import pgettext

register = template.Library()


def day_format(style: str) -> str:
    formats = {
        # Translators: a PHP-style date format (Django's date filter), e.g. "1 dic 2026"; keep backslashes.
        "short": pgettext("date format", "M j, Y"),
        # Translators: a PHP-style date format (Django's date filter), e.g. "1 de diciembre de 2026".
        "long": pgettext("date format", "F j, Y"),
        # Translators: a PHP-style date format (Django's date filter) without the year, e.g. "1 dic".
        "month_day": pgettext("date format", "M j"),
    }
    return formats[style]


@register.filter(expects_localtime=True)  # an aware datetime is shown on the day it is in TIME_ZONE, not in UTC
def day(value: date | None, style: str = "short") -> str:
    if value is None or value == "":
        return ""
    return date_filter(value, day_format(style))
