"""Money is integer cents (USD) everywhere; this is the one place that turns it into text or rounds it."""

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError


def format_cents(cents: int) -> str:
    """Format cents as dollars: 12345 -> "$123.45", -50 -> "-$0.50"."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def basis_points_of(amount_cents: int, basis_points: int) -> int:
    """`amount_cents * basis_points / 10_000`, rounded half up (to the nearest cent, ties away from zero).

    Both inputs are non-negative: coinsurance is a share of a non-negative remainder.
    """
    if amount_cents < 0 or basis_points < 0:
        raise ValueError("amount and basis points must be non-negative")
    return (amount_cents * basis_points + 5_000) // 10_000


def format_basis_points(basis_points: int) -> str:
    """2000 -> "20%", 1250 -> "12.5%"."""
    whole, rest = divmod(basis_points, 100)
    if rest == 0:
        return f"{whole}%"
    return f"{whole}.{rest:02d}".rstrip("0") + "%"


# Dollars typed by staff. At most this much: an invoice line above $10 million is a typo, and the column is a
# 32-bit integer of cents.
MAX_TYPED_CENTS = 1_000_000_000
_DOLLARS = re.compile(r"(?P<sign>-?)\$?(?P<whole>\d{1,3}(?:,\d{3})+|\d+)?(?:\.(?P<frac>\d*))?")


class DollarsError(ValueError):
    """Text that is not an amount of dollars; the message says what to type instead."""


def parse_dollars(text: str, *, allow_negative: bool = False, max_cents: int = MAX_TYPED_CENTS) -> int:
    """ "12.34", "$12.34", "1,234.50", "12" -> cents. Refuses anything else with a message staff can act on:
    more than 2 decimals, NaN and infinity, digits other than ASCII 0-9, control characters, and amounts over
    `max_cents` (or below zero unless `allow_negative`)."""
    if not isinstance(text, str):
        raise DollarsError("Enter an amount in dollars, like 12.34.")
    cleaned = text.strip().replace(" ", "")
    if cleaned.startswith("$-"):
        cleaned = "-$" + cleaned[2:]
    if len(cleaned) > 32:
        raise DollarsError(f"Enter an amount of at most {format_cents(max_cents)}.")
    if not cleaned.isascii() or not cleaned.isprintable():
        raise DollarsError("Enter an amount in dollars using the digits 0-9, like 12.34.")
    match = _DOLLARS.fullmatch(cleaned)
    if match is None or not (match["whole"] or match["frac"]):
        raise DollarsError("Enter an amount in dollars, like 12.34 or $1,234.50.")
    frac = match["frac"] or ""
    if len(frac) > 2:
        raise DollarsError("Enter at most 2 digits after the decimal point (cents).")
    cents = int((match["whole"] or "0").replace(",", "")) * 100 + int(frac.ljust(2, "0"))
    if match["sign"]:
        if not allow_negative and cents:
            raise DollarsError("Enter an amount of zero or more; this amount cannot be negative.")
        cents = -cents
    if abs(cents) > max_cents:
        raise DollarsError(f"Enter an amount of at most {format_cents(max_cents)}.")
    return cents


class DollarsField(forms.Field):
    """The one form field for money staff type: shows and takes dollars ("$12.34", "1,234.50"), cleans to cents.

    `formfield_for_dbfield` in `alma_billing.core.admin.DollarsAdmin` puts it on every `*_cents` column."""

    widget = forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12, "placeholder": "$0.00"})
    default_error_messages = {"invalid": "Enter an amount in dollars, like 12.34."}

    def __init__(self, *, allow_negative: bool = False, max_cents: int = MAX_TYPED_CENTS, **kwargs: Any) -> None:
        self.allow_negative = allow_negative
        self.max_cents = max_cents
        kwargs.pop("max_length", None)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        # An int (or the int-like string a bound-but-unchanged form holds) is cents from the database; anything
        # else is what staff typed, shown back to them as typed so they can correct it.
        if isinstance(value, int) and not isinstance(value, bool):
            return format_cents(value)
        return value

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return parse_dollars(str(value), allow_negative=self.allow_negative, max_cents=self.max_cents)
        except DollarsError as error:
            raise ValidationError(str(error), code="invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != (initial if initial not in self.empty_values else None)
        except ValidationError:
            return True
