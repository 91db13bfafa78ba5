"""P13 property: whatever the plan decides, in any order and resent any number of times, what the patient still
owes equals the plan's latest patient responsibility, unless the import left the claim to a person (and then it
changed nothing)."""

import itertools
from typing import Any

import pytest
from django.db.models import F, Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alma_billing.core.audit import SYSTEM
from claims.models import Claim, ClaimPayment
from claims.samples import Clp, build_835
from claims.services import remittance_import
from invoices import services
from invoices.models import Invoice
from payments.models import PaymentAllocation
from tests.factories import insured_session
from tests.payments.flows import pay, verified_client

pytestmark = pytest.mark.django_db

TRACES = itertools.count(1)

decision = st.tuples(st.integers(0, 20_000), st.sampled_from(["PCN1", "PCN2"]), st.booleans())


def owed(session_id: int) -> int:
    """What the patient still owes: open invoices as issued, less the plan's credits on them."""
    open_invoices = Invoice.objects.filter(session_id=session_id, status=Invoice.Status.OPEN)
    return int(open_invoices.aggregate(total=Sum(F("amount_cents") - F("credited_cents")))["total"] or 0)


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(coinsurance_bp=st.sampled_from([0, 2000]), decisions=st.lists(decision, min_size=1, max_size=5))
def test_p13_what_is_owed_follows_the_plans_latest_decision(
    coinsurance_bp: int, decisions: list[tuple[int, str, bool]]
) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=coinsurance_bp)
    services.session_complete(session_id=session.pk, actor=SYSTEM)
    services.invoice_issue(session_id=session.pk)
    claim = Claim.objects.get(session=session)
    for cents, payer_claim_number, resend in decisions:
        before = owed(session.pk)
        text = build_835(
            [Clp(claim.claim_number, responsibility_cents=cents, payer_claim_number=payer_claim_number)],
            trace=f"PROP{next(TRACES)}",
        )
        summary = remittance_import(raw_text=text)
        line = ClaimPayment.objects.filter(claim=claim).latest("id")
        # Nothing is paid or in flight here, so every decision settles: more is billed, less is credited.
        assert line.outcome != ClaimPayment.Outcome.NEEDS_ATTENTION, line.note
        assert owed(session.pk) == cents, (summary, line.outcome, before)
        if resend:
            after = (owed(session.pk), Invoice.objects.count(), ClaimPayment.objects.count())
            assert remittance_import(raw_text=text).already_imported == 1
            assert (owed(session.pk), Invoice.objects.count(), ClaimPayment.objects.count()) == after


step = st.one_of(
    st.tuples(st.just("decide"), st.integers(0, 20_000), st.sampled_from(["PCN1", "PCN2"])), st.just(("pay",))
)


def paid_plus_owed(session_id: int) -> int:
    settled = PaymentAllocation.objects.filter(invoice__session_id=session_id, state=PaymentAllocation.State.SETTLED)
    return sum(a.amount_cents - a.refunded_cents for a in settled) + owed(session_id)


@hsettings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=st.lists(step, min_size=1, max_size=4))
def test_p13_paid_plus_owed_is_what_the_plan_decided_with_payments_between_decisions(
    stripe_api: str, steps: list[tuple[Any, ...]]
) -> None:
    """Payments through localstripe between the plan's decisions: credits on what is open, refunds of what was
    paid, adjustments for more; paid (less refunds) plus owed is the plan's standing decision every time."""
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    services.session_complete(session_id=session.pk, actor=SYSTEM)
    invoice = services.invoice_issue(session_id=session.pk)
    assert invoice is not None
    claim = Claim.objects.get(session=session)
    client = verified_client(invoice)
    plan = invoice.amount_cents  # no decision yet: the estimate
    for action in steps:
        if action[0] == "pay":
            if owed(session.pk):
                assert pay(client, "all")["status"] == "succeeded"
        else:
            _, cents, payer_claim_number = action
            text = build_835(
                [Clp(claim.claim_number, responsibility_cents=cents, payer_claim_number=payer_claim_number)],
                trace=f"PAY{next(TRACES)}",
            )
            summary = remittance_import(raw_text=text)
            assert summary.needs_a_person == 0 and summary.refunds_waiting == 0, summary
            plan = cents
        assert paid_plus_owed(session.pk) == plan, action
