"""P2: the patient-responsibility arithmetic, by table for real-looking plans and by property for its invariants."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alma_billing.core.money import basis_points_of
from invoices.responsibility import PlanTerms, patient_responsibility


def terms(copay: int | None = None, coins: int | None = None, deductible: int = 0, oop: int | None = None) -> PlanTerms:
    return PlanTerms(
        copay_cents=copay, coinsurance_bp=coins, deductible_remaining_cents=deductible, oop_max_remaining_cents=oop
    )


@pytest.mark.parametrize(
    ("allowed", "plan", "owed", "deductible_part"),
    [
        # PPO copay plan, deductible met: the copay.
        (15_000, terms(copay=3_000), 3_000, 0),
        # Copay larger than what the plan allows: never more than the allowed amount.
        (2_500, terms(copay=3_000), 2_500, 0),
        # HDHP, deductible not met: the whole allowed amount goes to the deductible.
        (15_000, terms(coins=2000, deductible=200_000), 15_000, 15_000),
        # Deductible partly met: $50 deductible, then 20% of the remaining $100.
        (15_000, terms(coins=2000, deductible=5_000), 7_000, 5_000),
        # Coinsurance half-up: 15% of $123.45 = $18.5175 -> $18.52; 12.5% of $0.99 = 12.375c -> 12c.
        (12_345, terms(coins=1500), 1_852, 0),
        (99, terms(coins=1250), 12, 0),
        # Exactly half a cent rounds up: 50% of 1c = 0.5c -> 1c.
        (1, terms(coins=5000), 1, 0),
        # Out-of-pocket max nearly reached: capped at what remains.
        (15_000, terms(coins=2000, deductible=10_000, oop=4_000), 4_000, 10_000),
        # Out-of-pocket max reached: nothing owed.
        (15_000, terms(copay=3_000, oop=0), 0, 0),
        # Plan pays in full (no cost share reported, deductible met).
        (15_000, terms(), 0, 0),
        # Deductible then copay on the remainder.
        (15_000, terms(copay=2_000, deductible=5_000), 7_000, 5_000),
    ],
)
def test_p2_responsibility_for_real_looking_plans(
    allowed: int, plan: PlanTerms, owed: int, deductible_part: int
) -> None:
    result = patient_responsibility(allowed_cents=allowed, terms=plan)
    assert result.amount_cents == owed
    assert result.deductible_cents == deductible_part


def test_p2_negative_allowed_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        patient_responsibility(allowed_cents=-1, terms=terms())


def test_p2_half_up_rounding_helper() -> None:
    assert basis_points_of(3, 5000) == 2  # 1.5 -> 2
    assert basis_points_of(1, 4999) == 0  # 0.4999 -> 0
    assert basis_points_of(10_001, 10_000) == 10_001


cents = st.integers(min_value=0, max_value=5_000_000)
plans = st.builds(
    PlanTerms,
    copay_cents=st.none() | cents,
    coinsurance_bp=st.none() | st.integers(min_value=0, max_value=10_000),
    deductible_remaining_cents=cents,
    oop_max_remaining_cents=st.none() | cents,
)


@given(allowed=cents, plan=plans)
def test_p2_never_negative_never_above_allowed_or_oop(allowed: int, plan: PlanTerms) -> None:
    result = patient_responsibility(allowed_cents=allowed, terms=plan)
    assert 0 <= result.amount_cents <= allowed
    if plan.oop_max_remaining_cents is not None:
        assert result.amount_cents <= plan.oop_max_remaining_cents
    assert result.deductible_cents <= plan.deductible_remaining_cents


@given(allowed=cents, plan=plans)
def test_p2_amount_is_deductible_plus_cost_share_unless_capped(allowed: int, plan: PlanTerms) -> None:
    result = patient_responsibility(allowed_cents=allowed, terms=plan)
    if result.capped_by_oop:
        assert result.amount_cents == plan.oop_max_remaining_cents
        assert result.amount_cents < result.deductible_cents + result.cost_share_cents
    else:
        assert result.amount_cents == result.deductible_cents + result.cost_share_cents


@given(allowed=cents, extra=st.integers(min_value=0, max_value=100_000), plan=plans)
def test_p2_a_larger_allowed_amount_never_costs_the_patient_less(allowed: int, extra: int, plan: PlanTerms) -> None:
    smaller = patient_responsibility(allowed_cents=allowed, terms=plan).amount_cents
    larger = patient_responsibility(allowed_cents=allowed + extra, terms=plan).amount_cents
    assert larger >= smaller


@given(allowed=cents, bp=st.integers(min_value=0, max_value=10_000))
def test_p2_coinsurance_is_within_half_a_cent_of_exact(allowed: int, bp: int) -> None:
    result = patient_responsibility(allowed_cents=allowed, terms=terms(coins=bp))
    exact_times_two = allowed * bp * 2  # compare 2*10_000*result with 2*exact to stay in integers
    assert abs(result.amount_cents * 20_000 - exact_times_two) <= 10_000
