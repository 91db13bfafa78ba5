"""P13 accumulators: what the plan applied to the deductible and out-of-pocket maximum corrects the next estimate;
P9: an EAP session inside an Optum authorization stays $0.00 whatever the remittance says, and is flagged if the
plan disagrees."""

from pathlib import Path

import pytest

from alma_billing.core.audit import SYSTEM
from alma_billing.core.models import AuditEvent
from claims.models import Claim, ClaimPayment
from claims.samples import Clp, build_835
from invoices import services
from invoices.models import Invoice, TherapySession
from tests.claims.flows import reversal, run, run_failing
from tests.factories import EapAuthorizationFactory, TherapySessionFactory, insured_session

pytestmark = pytest.mark.django_db


def bill(session: TherapySession) -> Invoice | None:
    services.session_complete(session_id=session.pk, actor=SYSTEM)
    return services.invoice_issue(session_id=session.pk)


@pytest.fixture
def first_visit() -> tuple[Claim, Invoice]:
    """$150.00 allowed, $100.00 of deductible left at the check, then 20%: estimated $100.00 + $10.00."""
    session = insured_session(
        allowed_amount_cents=15_000, plan_coinsurance_bp=2000, plan_deductible_remaining_cents=10_000
    )
    invoice = bill(session)
    assert invoice is not None and invoice.amount_cents == 11_000
    return Claim.objects.get(session=session), invoice


def second_visit(first: Invoice) -> Invoice | None:
    return bill(TherapySessionFactory(patient=first.patient, provider=first.provider, allowed_amount_cents=15_000))


def test_p13_the_plans_deductible_corrects_the_next_visits_estimate(first_visit, tmp_path: Path) -> None:
    claim, first = first_visit
    # The plan applied only $40.00 to the deductible (another provider's claim used the rest), then 20% of $110.00.
    decision = Clp(claim.claim_number, responsibility_cents=6_200, adjustments=[("PR", "1", 4_000), ("PR", "2", 2_200)])
    run(tmp_path, build_835([decision]))
    claim.refresh_from_db()
    assert claim.plan_deductible_cents == 4_000 and claim.eligibility_snapshot == first.eligibility_snapshot
    event = AuditEvent.objects.get(action="claim.accumulators_updated")
    assert event.object_id == str(claim.pk)

    second = second_visit(first)
    # $60.00 of deductible left (not $0.00 as the estimate alone said), then 20% of $90.00.
    assert second is not None and second.amount_cents == 7_800
    assert second.calculation["deductible_used_by_earlier_cents"] == 4_000

    # Importing the same file again changes nothing, the figures included.
    assert "1 already imported" in run(tmp_path, build_835([decision]))
    assert AuditEvent.objects.filter(action="claim.accumulators_updated").count() == 1


def test_p13_a_reversal_gives_the_next_estimate_back_the_estimates_figures(first_visit, tmp_path: Path) -> None:
    claim, first = first_visit
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=2_000, adjustments=[("PR", "2", 2_000)])]))
    run(tmp_path, build_835([reversal(claim, 2_000)], trace="EFT2"))
    claim.refresh_from_db()
    assert claim.plan_deductible_cents is None and claim.plan_responsibility_cents is None
    second = second_visit(first)
    # The estimate's $100.00 of deductible counts again: 20% of $150.00.
    assert second is not None and second.amount_cents == 3_000


def test_p13_the_plans_total_counts_toward_the_out_of_pocket_maximum(tmp_path: Path) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000, plan_oop_max_remaining_cents=5_000)
    first = bill(session)
    assert first is not None and first.amount_cents == 3_000
    claim = Claim.objects.get(session=session)
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=4_500, adjustments=[("PR", "2", 4_500)])]))
    second = second_visit(first)
    # $50.00 maximum less the $45.00 the plan counted: $5.00, not the $20.00 the estimate alone would leave.
    assert second is not None and second.amount_cents == 500


@pytest.fixture
def covered_eap() -> TherapySession:
    authorization = EapAuthorizationFactory(sessions_authorized=3)
    session = TherapySessionFactory(patient=authorization.patient, billing_type=TherapySession.BillingType.EAP)
    assert bill(session) is None
    session.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NO_CHARGE and not hasattr(session, "claim")
    return session


def test_p9_an_eap_session_the_plan_agrees_on_is_confirmed_at_zero(covered_eap, tmp_path: Path) -> None:
    number = f"ALMA{covered_eap.pk:08d}"
    out = run(tmp_path, build_835([Clp(number, responsibility_cents=0)]))
    assert "1 claims matched" in out and "1 confirmed" in out and "0 unmatched" in out
    claim = Claim.objects.get(session=covered_eap)
    assert claim.status == Claim.Status.CONFIRMED and not claim.attention
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(("status", "cents", "said"), [("1", 4_000, "owes $40.00"), ("4", 0, "denied the claim")])
def test_p9_an_eap_session_the_plan_bills_stays_free_and_is_flagged(
    covered_eap, tmp_path: Path, status: str, cents: int, said: str
) -> None:
    number = f"ALMA{covered_eap.pk:08d}"
    out = run(
        tmp_path,
        build_835(
            [
                Clp(
                    number,
                    status=status,
                    responsibility_cents=cents,
                    adjustments=[("PR", "2", cents)] if cents else [("CO", "197", 20_000)],
                )
            ]
        ),
    )
    assert "1 need a person" in out and "0 adjusted up" in out
    assert not Invoice.objects.exists()  # nothing billed, whatever the plan said
    claim = Claim.objects.get(session=covered_eap)
    assert said in claim.attention and covered_eap.eap_authorization.authorization_code in claim.attention
    assert "owes nothing" in claim.attention
    assert ClaimPayment.objects.get().outcome == ClaimPayment.Outcome.NEEDS_ATTENTION


def test_p13_a_claim_number_for_a_session_that_is_not_a_claim_stays_unmatched(tmp_path: Path) -> None:
    self_pay = TherapySessionFactory(billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=9_000)
    bill(self_pay)
    numbers = [f"ALMA{self_pay.pk:08d}", "ALMA99999999", f"ALMA{self_pay.pk:09d}", f"alma{self_pay.pk:08d}"]
    out = run(tmp_path, build_835([Clp(n, payer_claim_number=f"P{i}") for i, n in enumerate(numbers)]))
    assert "0 claims matched" in out and "4 unmatched" in out
    # Full-width digits are not X12 characters: the file is refused with a clear error, and nothing changes.
    error = run_failing(tmp_path, build_835([Clp("ALMA００００００１", payer_claim_number="PX")], trace="EFT9"))
    assert "not imported" in error and "ASCII X12" in error and ClaimPayment.objects.count() == 4
    assert not Claim.objects.exists()
    assert Invoice.objects.get().amount_cents == 9_000 and Invoice.objects.count() == 1
