"""`{{ value|day:"short" }}` in patient templates and emails: a date in the active language's own order
("Dec 1, 2026" / "1 dic 2026"). English keeps the exact formats the pages always had.

Formatting a date through Django's date filter costs a format lookup, a regex split and a translated month name on
every call; a summary page shows dozens of dates, most of them the same few. So the formats are read once per
language and each (language, style, day) is formatted once per process (`day_text`, also used by views that
prepare their rows in Python)."""

from datetime import date, datetime
from functools import lru_cache

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils import timezone
from django.utils.translation import get_language, pgettext

register = template.Library()


@lru_cache(maxsize=16)
def _day_formats(language: str | None) -> dict[str, str]:
    return {
        # Translators: a PHP-style date format (Django's date filter), e.g. "1 dic 2026"; keep backslashes.
        "short": pgettext("date format", "M j, Y"),
        # Translators: a PHP-style date format (Django's date filter), e.g. "1 de diciembre de 2026".
        "long": pgettext("date format", "F j, Y"),
        # Translators: a PHP-style date format (Django's date filter) without the year, e.g. "1 dic".
        "month_day": pgettext("date format", "M j"),
    }


def day_format(style: str) -> str:
    return _day_formats(get_language())[style]


@lru_cache(maxsize=4096)
def _day_text(language: str | None, style: str, value: date) -> str:
    return str(date_filter(value, _day_formats(language)[style]))


def day_text(value: date | datetime | None, style: str = "short") -> str:
    """The day `value` falls on, in TIME_ZONE for an aware datetime, in the active language's `style`."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = (timezone.localtime(value) if timezone.is_aware(value) else value).date()
    return _day_text(get_language(), style, value)


@register.filter(expects_localtime=True)  # an aware datetime is shown on the day it is in TIME_ZONE, not in UTC
def day(value: date | None, style: str = "short") -> str:
    return day_text(value, style)
