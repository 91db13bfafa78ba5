from alma_billing.core.money import format_basis_points, format_cents


def test_cents_are_shown_as_dollars() -> None:
    assert format_cents(0) == "$0.00"
    assert format_cents(7) == "$0.07"
    assert format_cents(123_456) == "$1,234.56"
    assert format_cents(-50) == "-$0.50"


def test_basis_points_are_shown_as_percent() -> None:
    assert format_basis_points(2000) == "20%"
    assert format_basis_points(1250) == "12.5%"
    assert format_basis_points(5) == "0.05%"
