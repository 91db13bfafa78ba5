"""Turns an invoice's stored calculation into sentences a patient understands (shown after verification)."""

from typing import Any

from alma_billing.core.money import format_basis_points, format_cents


def explanation_lines(calculation: dict[str, Any]) -> list[str]:
    note = [calculation["note"]] if calculation.get("note") else []
    return note + _arithmetic_lines(calculation)


def _arithmetic_lines(calculation: dict[str, Any]) -> list[str]:
    method = calculation.get("method")
    if method == "self_pay":
        return [f"Self-pay rate for this visit: {format_cents(calculation['rate_cents'])}."]
    if method != "insurance":
        return []
    lines = [
        f"Based on your plan's eligibility check of {calculation['checked_on']}.",
        f"Amount your plan allows for this visit: {format_cents(calculation['allowed_cents'])}.",
    ]
    earlier = calculation.get("deductible_used_by_earlier_cents", 0)
    remaining = calculation["deductible_remaining_cents"]
    if calculation["deductible_cents"]:
        note = f" ({format_cents(earlier)} already applied to earlier visits)" if earlier else ""
        lines.append(
            f"Toward your deductible: {format_cents(calculation['deductible_cents'])} "
            f"(deductible remaining was {format_cents(remaining)}{note})."
        )
    elif calculation.get("deductible_checked"):
        lines.append("Your deductible was already met.")
    kind = calculation["cost_share_kind"]
    if kind == "copay":
        lines.append(f"Your copay: {format_cents(calculation['cost_share_cents'])}.")
    elif kind == "coinsurance" and calculation["cost_share_cents"]:
        after = calculation["allowed_cents"] - calculation["deductible_cents"]
        lines.append(
            f"Your coinsurance: {format_basis_points(calculation['coinsurance_bp'])} of {format_cents(after)} "
            f"= {format_cents(calculation['cost_share_cents'])} (rounded to the nearest cent)."
        )
    if calculation["capped_by_oop"]:
        lines.append(
            f"Capped at your remaining out-of-pocket maximum of {format_cents(calculation['oop_max_remaining_cents'])}."
        )
    lines.append(f"You owe: {format_cents(calculation['amount_cents'])}.")
    return lines
