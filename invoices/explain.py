"""Turns an invoice's stored calculation into sentences a patient understands (shown after verification), in the
active language. The calculation stores numbers (and, for one case, an English note), never translated text."""

from datetime import datetime
from typing import Any

from django.template.defaultfilters import date as date_format
from django.utils.translation import gettext, gettext_noop

from alma_billing.core.money import format_basis_points, format_cents
from alma_billing.core.templatetags.patient_dates import day_format

# The one note the calculation stores as a sentence (invoices/services.py); shown translated.
EAP_NOT_COVERED = gettext_noop("Your EAP authorization did not cover this visit (none on file, used up or expired).")


def explanation_lines(calculation: dict[str, Any]) -> list[str]:
    if calculation.get("method") == "plan_decision":
        return _plan_decision_lines(calculation)
    note = [gettext(calculation["note"])] if calculation.get("note") else []
    return note + _arithmetic_lines(calculation)


def _plan_decision_lines(calculation: dict[str, Any]) -> list[str]:
    """P13, an adjustment invoice: the estimate, the plan's decision line by line, and the difference."""
    billed = calculation.get("estimate_cents", 0)
    estimated = calculation.get("estimated_cents", billed)
    if calculation.get("estimated_on"):
        lines = [
            gettext("Estimated on {date}: {amount}.").format(
                date=_day(calculation["estimated_on"]), amount=format_cents(estimated)
            )
        ]
    else:
        lines = [gettext("Estimated: {amount}.").format(amount=format_cents(estimated))]
    if billed != estimated:
        lines.append(gettext("Billed for this visit so far: {amount}.").format(amount=format_cents(billed)))
    decision = gettext("Your plan's decision: you owe {amount} for this visit.")
    if calculation.get("claim_number"):
        decision = gettext("Your plan's decision on claim {number}: you owe {amount} for this visit.")
    lines.append(
        decision.format(
            number=calculation.get("claim_number", ""),
            amount=format_cents(calculation.get("plan_responsibility_cents", 0)),
        )
    )
    for adjustment in calculation.get("adjustments", []):
        if not isinstance(adjustment, dict) or adjustment.get("group") != "PR":
            continue
        label = _PLAN_LINES.get(str(adjustment.get("reason")))
        amount = format_cents(int(adjustment.get("amount_cents", 0)))
        if label is not None:
            lines.append(gettext(label).format(amount=amount))
        else:
            lines.append(
                gettext("Other amount your plan assigned to you (code {code}): {amount}.").format(
                    code=adjustment.get("reason"), amount=amount
                )
            )
    lines.append(gettext("Difference: {amount}.").format(amount=format_cents(calculation.get("amount_cents", 0))))
    return lines


# The plan's patient-responsibility reasons (CAS group PR) the patient reads line by line.
_PLAN_LINES = {
    "1": gettext_noop("Deductible: {amount}."),
    "2": gettext_noop("Coinsurance: {amount}."),
    "3": gettext_noop("Copay: {amount}."),
}


def _day(stored: str) -> str:
    """The check's date, stored as English words ("November 1, 2026"), in the active language's long format."""
    try:
        day = datetime.strptime(stored, "%B %d, %Y").date()
    except (TypeError, ValueError):
        return stored
    return date_format(day, day_format("long"))


def _arithmetic_lines(calculation: dict[str, Any]) -> list[str]:
    method = calculation.get("method")
    if method == "self_pay":
        return [
            gettext("Self-pay rate for this visit: {amount}.").format(amount=format_cents(calculation["rate_cents"]))
        ]
    if method != "insurance":
        return []
    lines = [
        gettext("Based on your plan's eligibility check of {date}.").format(date=_day(calculation["checked_on"])),
        gettext("Amount your plan allows for this visit: {amount}.").format(
            amount=format_cents(calculation["allowed_cents"])
        ),
    ]
    earlier = calculation.get("deductible_used_by_earlier_cents", 0)
    remaining = calculation["deductible_remaining_cents"]
    if calculation["deductible_cents"]:
        if earlier:
            line = gettext(
                "Toward your deductible: {amount} (deductible remaining was {remaining} ({earlier} already applied "
                "to earlier visits))."
            )
        else:
            line = gettext("Toward your deductible: {amount} (deductible remaining was {remaining}).")
        lines.append(
            line.format(
                amount=format_cents(calculation["deductible_cents"]),
                remaining=format_cents(remaining),
                earlier=format_cents(earlier),
            )
        )
    elif calculation.get("deductible_checked"):
        lines.append(gettext("Your deductible was already met."))
    kind = calculation["cost_share_kind"]
    if kind == "copay":
        lines.append(gettext("Your copay: {amount}.").format(amount=format_cents(calculation["cost_share_cents"])))
    elif kind == "coinsurance" and calculation["cost_share_cents"]:
        after = calculation["allowed_cents"] - calculation["deductible_cents"]
        lines.append(
            gettext("Your coinsurance: {rate} of {base} = {amount} (rounded to the nearest cent).").format(
                rate=format_basis_points(calculation["coinsurance_bp"]),
                base=format_cents(after),
                amount=format_cents(calculation["cost_share_cents"]),
            )
        )
    if calculation["capped_by_oop"]:
        lines.append(
            gettext("Capped at your remaining out-of-pocket maximum of {amount}.").format(
                amount=format_cents(calculation["oop_max_remaining_cents"])
            )
        )
    lines.append(gettext("You owe: {amount}.").format(amount=format_cents(calculation["amount_cents"])))
    return lines
