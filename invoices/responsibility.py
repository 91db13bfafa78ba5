"""P2: the patient's responsibility for one session, from one eligibility check. Pure: no database, no clock."""

from dataclasses import asdict, dataclass
from typing import Any, Literal

from alma_billing.core.money import basis_points_of

CostShareKind = Literal["copay", "coinsurance", "none"]


@dataclass(frozen=True)
class PlanTerms:
    """What the eligibility check said, after subtracting what earlier invoices on the same check already used."""

    copay_cents: int | None
    coinsurance_bp: int | None
    deductible_remaining_cents: int
    oop_max_remaining_cents: int | None  # None: the payer reported no out-of-pocket maximum


@dataclass(frozen=True)
class Responsibility:
    allowed_cents: int
    deductible_cents: int
    cost_share_kind: CostShareKind
    cost_share_cents: int
    capped_by_oop: bool
    amount_cents: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def patient_responsibility(*, allowed_cents: int, terms: PlanTerms) -> Responsibility:
    """Deductible first; then the copay, or else coinsurance (half-up) on the rest; capped by the OOP max.

    A plan with a copay uses the copay for what the deductible leaves (never more than that remainder); a plan
    with only coinsurance pays its share of the remainder. The result is never negative, never more than the
    allowed amount, and never more than the out-of-pocket maximum still remaining.
    """
    if allowed_cents < 0:
        raise ValueError("allowed amount cannot be negative")
    deductible = min(allowed_cents, max(terms.deductible_remaining_cents, 0))
    remainder = allowed_cents - deductible
    kind: CostShareKind
    if terms.copay_cents is not None:
        kind, cost_share = "copay", min(max(terms.copay_cents, 0), remainder)
    elif terms.coinsurance_bp is not None:
        basis_points = min(max(terms.coinsurance_bp, 0), 10_000)
        kind, cost_share = "coinsurance", basis_points_of(remainder, basis_points)
    else:
        kind, cost_share = "none", 0
    amount = deductible + cost_share
    capped = False
    if terms.oop_max_remaining_cents is not None and amount > max(terms.oop_max_remaining_cents, 0):
        amount, capped = max(terms.oop_max_remaining_cents, 0), True
    return Responsibility(
        allowed_cents=allowed_cents,
        deductible_cents=deductible,
        cost_share_kind=kind,
        cost_share_cents=cost_share,
        capped_by_oop=capped,
        amount_cents=amount,
    )
