"""P13 property: whatever the plan decides, in any order and resent any number of times, what the patient still
owes equals the plan's latest patient responsibility, unless the import left the claim to a person (and then it
changed nothing)."""

import itertools

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
from tests.factories import insured_session

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
