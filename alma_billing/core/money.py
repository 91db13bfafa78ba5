"""Money is integer cents (USD) everywhere; this is the one place that turns it into text or rounds it."""


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
