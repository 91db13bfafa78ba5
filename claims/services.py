"""Writes for claims: open one per insurance session, and settle it from the plan's remittance (P13)."""

from alma_billing.core.audit import SYSTEM, Actor, audit_record
from claims.models import Claim, claim_number_for
from invoices.models import Invoice, TherapySession


def session_goes_to_plan(session: TherapySession) -> bool:
    """An insurance session billed (an invoice or a $0 estimate), or an EAP session billed as insurance past
    its authorization: the plan decides it, so it has a claim."""
    if session.billing_outcome not in (TherapySession.Outcome.INVOICED, TherapySession.Outcome.NO_CHARGE):
        return False
    if session.billing_type == TherapySession.BillingType.INSURANCE:
        return True
    return Invoice.objects.filter(session=session, kind=Invoice.Kind.INSURANCE).exists()


def claim_for_session(session: TherapySession, *, actor: Actor = SYSTEM) -> Claim | None:
    """The session's claim, opened once when it is billed to the plan; None for self-pay and covered EAP.

    Called inside the billing transaction (the session row is locked there), so two runs open one claim.
    """
    if not session_goes_to_plan(session):
        return None
    claim, created = Claim.objects.get_or_create(
        session=session, defaults={"claim_number": claim_number_for(session.pk)}
    )
    if created:
        audit_record(actor=actor, action="claim.submitted", obj=claim, session_id=session.pk)
    return claim
