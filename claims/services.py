"""Writes for claims: open one per insurance session, and settle it from the plan's remittance (P13)."""

import logging
import re
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_record
from alma_billing.core.errors import TransportError
from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from alma_billing.core.queue import enqueue_on_commit
from claims.models import Claim, ClaimPayment, InvoiceCredit, Remittance, claim_number_for
from claims.x12 import DENIED, REVERSAL, ClaimLine, RemittanceFileError, parse_835
from invoices.models import Invoice, TherapySession
from invoices.selectors import active_coverage_for, eligibility_check_for
from invoices.services import invoice_void
from invoices.tasks import invoice_email_task
from payments.models import Refund
from payments.services import refund_for_claim

logger = logging.getLogger(__name__)


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
    claim = _claim_insert_once(session) if connection.vendor == "postgresql" else None
    if claim is None:
        # The session row is locked by the caller, so nobody opens its claim between this read and the insert.
        existing = Claim.objects.filter(session=session).first()
        if existing is not None:
            return existing
        claim = Claim.objects.create(session=session, claim_number=claim_number_for(session.pk))
    elif claim.pk is None:  # PostgreSQL: the session already had its claim
        return Claim.objects.get(session=session)
    audit_record(actor=actor, action=AuditAction.CLAIM_SUBMITTED, obj=claim, session_id=session.pk)
    return claim


_CLAIM_INSERT_ONCE = """
INSERT INTO claims_claim (session_id, claim_number, status, created_at, attention)
VALUES (%s, %s, %s, %s, '')
ON CONFLICT (session_id) DO NOTHING
RETURNING id
"""


def _claim_insert_once(session: TherapySession) -> Claim:
    """PostgreSQL: open the session's claim in one statement (instead of a read, a savepoint, the insert and its
    release); the returned claim has no pk when the session already had one. Another unique clash (the claim
    number) still raises."""
    claim = Claim(
        session=session, claim_number=claim_number_for(session.pk), status=Claim.Status.SUBMITTED, attention=""
    )
    claim.created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_INSERT_ONCE, [session.pk, claim.claim_number, claim.status, claim.created_at])
        row = cursor.fetchone()
    if row is not None:
        claim.pk = row[0]
        claim._state.adding = False
    return claim


@dataclass
class ImportSummary:
    """What one file did, in the words ops read (the command prints these)."""

    file_name: str
    matched: int = 0
    adjusted_up: int = 0
    reduced: int = 0
    refunded: int = 0
    confirmed: int = 0
    denied: int = 0
    reversed: int = 0
    unmatched: int = 0
    already_imported: int = 0
    needs_a_person: int = 0
    remittance_id: int | None = None
    dry_run: bool = False
    refunds_waiting: int = 0  # decided, but Stripe did not answer: retried by the next import

    def counts(self) -> dict[str, int]:
        return {
            "claims matched": self.matched,
            "adjusted up": self.adjusted_up,
            "reduced": self.reduced,
            "refunded": self.refunded,
            "confirmed": self.confirmed,
            "denied": self.denied,
            "reversed": self.reversed,
            "unmatched": self.unmatched,
            "already imported": self.already_imported,
            "need a person": self.needs_a_person,
        }


_COUNTED = {
    ClaimPayment.Outcome.ADJUSTED_UP: "adjusted_up",
    ClaimPayment.Outcome.REDUCED: "reduced",
    ClaimPayment.Outcome.REFUNDED: "refunded",
    ClaimPayment.Outcome.CONFIRMED: "confirmed",
    ClaimPayment.Outcome.DENIED: "denied",
    ClaimPayment.Outcome.REVERSED: "reversed",
    ClaimPayment.Outcome.UNMATCHED: "unmatched",
    ClaimPayment.Outcome.NEEDS_ATTENTION: "needs_a_person",
}


# The audit action a remittance line records, named by what it did to the claim.
_OUTCOME_ACTIONS = {
    ClaimPayment.Outcome.ADJUSTED_UP: AuditAction.CLAIM_ADJUSTED_UP,
    ClaimPayment.Outcome.REDUCED: AuditAction.CLAIM_REDUCED,
    ClaimPayment.Outcome.REFUNDED: AuditAction.CLAIM_REFUNDED,
    ClaimPayment.Outcome.CONFIRMED: AuditAction.CLAIM_CONFIRMED,
    ClaimPayment.Outcome.DENIED: AuditAction.CLAIM_DENIED,
    ClaimPayment.Outcome.REVERSED: AuditAction.CLAIM_REVERSED,
    ClaimPayment.Outcome.UNMATCHED: AuditAction.CLAIM_UNMATCHED,
    ClaimPayment.Outcome.NEEDS_ATTENTION: AuditAction.CLAIM_NEEDS_ATTENTION,
}


class _Rollback(Exception):
    """Raised at the end of a dry run (or of a file seen before) to roll everything back."""


def remittance_import(
    *, raw_text: str, file_name: str = "", dry_run: bool = False, actor: Actor = SYSTEM
) -> ImportSummary:
    """Apply one 835 file, all or nothing: the file is validated whole first (RemittanceFileError names the segment),
    then every claim line is settled in one transaction. A line already imported (same TRN02, CLP01, CLP07) changes
    nothing. Refunds to cards are made after the commit (Stripe cannot be rolled back), each once."""
    remittance = parse_835(raw_text)
    summary = ImportSummary(file_name=file_name, dry_run=dry_run)
    try:
        with transaction.atomic():
            record = Remittance.objects.create(
                file_name=file_name[:255],
                raw_text=raw_text,
                trace_number=remittance.trace_number,
                payer_name=remittance.payer_name,
                payer_id=remittance.payer_id,
                payment_cents=remittance.payment_cents,
            )
            for line in remittance.claims:
                payment = _line_apply(remittance=record, line=line, actor=actor)
                if payment is None:
                    summary.already_imported += 1
                    continue
                if payment.claim_id is not None:
                    summary.matched += 1
                field_name = _COUNTED[ClaimPayment.Outcome(payment.outcome)]
                setattr(summary, field_name, getattr(summary, field_name) + 1)
            record.summary = summary.counts()
            record.save(update_fields=["summary"])
            audit_record(actor=actor, action=AuditAction.REMITTANCE_IMPORTED, obj=record, **summary.counts())
            summary.remittance_id = record.pk
            if dry_run or (remittance.claims and summary.already_imported == len(remittance.claims)):
                raise _Rollback  # a dry run, or a file seen before: nothing is kept, not even the file
    except _Rollback:
        summary.remittance_id = None
        if not dry_run:
            summary.refunds_waiting = claim_refunds_due()
        return summary
    except IntegrityError:  # the dedupe constraint: the same lines committed by an import running at the same time
        raise RemittanceFileError(
            "CLP segment: these claim lines were imported by another run at the same time; nothing changed here. "
            "Run it again to see them counted as already imported."
        ) from None
    summary.refunds_waiting = claim_refunds_due()
    return summary


def _line_apply(*, remittance: Remittance, line: ClaimLine, actor: Actor) -> ClaimPayment | None:
    # Lock the claim first: a concurrent import of the same line waits here, then finds it already imported.
    claim = Claim.objects.select_for_update().filter(claim_number=line.claim_number).first()
    if ClaimPayment.objects.filter(
        trace_number=line.trace_number, claim_number=line.claim_number, payer_claim_number=line.payer_claim_number
    ).exists():
        return None
    payment = ClaimPayment(
        remittance=remittance,
        claim=claim,
        trace_number=line.trace_number,
        claim_number=line.claim_number,
        status_code=line.status_code,
        charge_cents=line.charge_cents,
        paid_cents=line.paid_cents,
        patient_responsibility_cents=line.patient_responsibility_cents,
        payer_claim_number=line.payer_claim_number,
        adjustments=[{"group": a.group, "reason": a.reason, "amount_cents": a.amount_cents} for a in line.adjustments],
        outcome=ClaimPayment.Outcome.UNMATCHED,
    )
    if claim is None:
        claim = _covered_eap_claim(line.claim_number, actor=actor)
        payment.claim = claim
    if claim is None:
        payment.note = "No claim with this number: check the CLP01 with the clearinghouse."
        payment.save()
        return payment
    payment.save()  # the true-up links to it; the dedupe constraint also holds against a concurrent import
    _true_up(claim=claim, payment=payment, actor=actor)
    payment.save()
    audit_record(
        actor=actor,
        action=_OUTCOME_ACTIONS[ClaimPayment.Outcome(payment.outcome)],
        obj=claim,
        remittance_id=remittance.pk,
        claim_payment_id=payment.pk,
        plan_responsibility_cents=payment.patient_responsibility_cents,
    )
    return payment


def _covered_eap(session: TherapySession) -> bool:
    """P9: an in-network Optum EAP session inside its authorization: $0 to the patient, whatever a plan says."""
    authorization = session.eap_authorization
    return (
        session.billing_type == TherapySession.BillingType.EAP
        and session.billing_outcome == TherapySession.Outcome.NO_CHARGE
        and authorization is not None
        and authorization.in_network
    )


def _covered_eap_claim(claim_number: str, *, actor: Actor) -> Claim | None:
    """A covered EAP session has no claim until the plan sends a decision on it (its number is ours all the same):
    opened then, locked, so the decision is kept and a disagreement is flagged. Anything else: None."""
    match = re.fullmatch(r"ALMA(\d{8})", claim_number)
    if match is None:
        return None
    session = (
        TherapySession.objects.select_for_update(of=("self",))
        .select_related("eap_authorization")
        .filter(pk=int(match.group(1)))
        .first()
    )
    if session is None or not _covered_eap(session) or claim_number_for(session.pk) != claim_number:
        return None
    claim, created = Claim.objects.get_or_create(session=session, defaults={"claim_number": claim_number})
    if created:
        audit_record(actor=actor, action=AuditAction.CLAIM_OPENED_FOR_EAP, obj=claim, session_id=session.pk)
    return Claim.objects.select_for_update().get(pk=claim.pk)


def _eap_decision(*, claim: Claim, payment: ClaimPayment) -> None:
    """The patient owes nothing (P9) whatever the remittance says; if the plan says otherwise, a person looks."""
    authorization = claim.session.eap_authorization
    assert authorization is not None  # _covered_eap
    says = payment.patient_responsibility_cents
    if payment.status_code == REVERSAL:
        payment.outcome = ClaimPayment.Outcome.REVERSED
        payment.note = f"Reversed {payment.payer_claim_number}; an EAP session inside its authorization stays $0.00."
    elif payment.status_code == DENIED or says != 0:
        said = "denied the claim" if payment.status_code == DENIED else f"says the patient owes {format_cents(says)}"
        claim.attention = (
            f"EAP session inside {authorization.get_program_display()} authorization "
            f"{authorization.authorization_code}, but the plan {said} (reason codes {_reason_codes(payment)}). "
            "The patient owes nothing for it and nothing was billed: take it up with the EAP."
        )
        payment.outcome = ClaimPayment.Outcome.NEEDS_ATTENTION
        payment.note = claim.attention
    else:
        claim.status, claim.attention = Claim.Status.CONFIRMED, ""
        claim.plan_responsibility_cents = 0
        payment.outcome = ClaimPayment.Outcome.CONFIRMED
        payment.note = "EAP session inside its authorization: $0.00, as the plan agrees."
    claim.save(update_fields=["status", "decided_at", "attention", "plan_responsibility_cents"])


def _accumulators_record(
    *, claim: Claim, standing: ClaimPayment | None, original: Invoice | None, actor: Actor
) -> None:
    """What the plan's standing decision applied to the deductible (CAS PR 1) and, in all, toward the out-of-pocket
    maximum (CLP05), against the eligibility check the estimate used: later estimates on that check use these
    figures instead of the estimate's (invoices.selectors.eligibility_used_on). With no standing decision the
    estimate's figures count again. Recomputed from the standing decision, so a re-import changes nothing."""
    session = claim.session
    snapshot_id = claim.eligibility_snapshot_id or (
        Invoice.objects.filter(session=session, eligibility_snapshot__isnull=False)
        .values_list("eligibility_snapshot_id", flat=True)
        .first()
    )
    if snapshot_id is None:  # a $0 estimate has no invoice: the check it was made on
        coverage = active_coverage_for(patient_id=session.patient_id)
        check = eligibility_check_for(coverage=coverage, day=session.date_of_service) if coverage else None
        snapshot_id = check.pk if check is not None else None
    deductible = None
    if standing is not None:
        deductible = sum(a["amount_cents"] for a in standing.adjustments if a["group"] == "PR" and a["reason"] == "1")
        deductible = max(deductible, 0)
    if standing is None and (claim.eligibility_snapshot_id, claim.plan_deductible_cents) == (snapshot_id, None):
        return  # nothing applied before, nothing now
    before = claim.plan_deductible_cents
    claim.eligibility_snapshot_id, claim.plan_deductible_cents = snapshot_id, deductible
    audit_record(
        actor=actor,
        action=AuditAction.CLAIM_ACCUMULATORS_UPDATED,
        obj=claim,
        eligibility_snapshot_id=snapshot_id,
        deductible_cents_before=before,
        deductible_cents=deductible,
        out_of_pocket_cents=claim.plan_responsibility_cents,
        claim_payment_id=standing.pk if standing is not None else None,
    )


def _reason_codes(payment: ClaimPayment) -> str:
    return ", ".join(f"{a['group']}-{a['reason']}" for a in payment.adjustments) or "none given"


def _true_up(*, claim: Claim, payment: ClaimPayment, actor: Actor) -> None:
    """The plan's patient responsibility (CLP05) against what the patient is billed for this claim now."""
    now = timezone.now()
    session = claim.session
    claim.decided_at = now
    if _covered_eap(session):
        _eap_decision(claim=claim, payment=payment)
        return
    if payment.status_code == DENIED:
        claim.status = Claim.Status.DENIED
        claim.attention = (
            f"Denied by the plan ({payment.payer_claim_number}); reason codes {_reason_codes(payment)}. "
            "Nothing was billed automatically: the provider and ops decide what happens next."
        )
        claim.save(update_fields=["status", "decided_at", "attention"])
        payment.outcome = ClaimPayment.Outcome.DENIED
        payment.note = claim.attention
        return
    # The plan's standing decision: the latest line not reversed (a reversal, CLP02 22, cancels the decision with
    # its CLP07 whichever arrived first). With none standing, the patient owes the estimate again.
    lines = list(claim.payments.exclude(status_code=DENIED).order_by("id"))
    reversed_numbers = {line.payer_claim_number for line in lines if line.status_code == REVERSAL}
    standing = [
        line for line in lines if line.status_code != REVERSAL and line.payer_claim_number not in reversed_numbers
    ]
    invoices = list(
        Invoice.objects.select_for_update().filter(session=session).exclude(status=Invoice.Status.VOID).order_by("id")
    )
    original = next((i for i in invoices if i.kind != Invoice.Kind.ADJUSTMENT), None)
    estimated = original or _credited_away_original(session)
    estimate = estimated.amount_cents if estimated is not None else 0
    target = standing[-1].patient_responsibility_cents if standing else estimate
    outcome = _settle(
        claim=claim, payment=payment, invoices=invoices, original=original, estimated=estimated, target=target,
        actor=actor,
    )  # fmt: skip
    if payment.status_code == REVERSAL:
        payment.outcome = ClaimPayment.Outcome.REVERSED
        payment.note = f"Reversed {payment.payer_claim_number}: {payment.note or outcome.label}"
    else:
        payment.outcome = outcome
    if outcome != ClaimPayment.Outcome.NEEDS_ATTENTION:
        claim.attention = ""  # settled: whatever an earlier line left for a person is no longer open
        claim.plan_responsibility_cents = max(target, 0) if standing else None
        if not standing:
            claim.status = Claim.Status.REVERSED
        else:
            claim.status = Claim.Status.CONFIRMED if target == estimate else Claim.Status.ADJUSTED
        _accumulators_record(claim=claim, standing=standing[-1] if standing else None, original=original, actor=actor)
    claim.save(
        update_fields=[
            "status", "decided_at", "plan_responsibility_cents", "attention", "eligibility_snapshot",
            "plan_deductible_cents",
        ]
    )  # fmt: skip


def _credited_away_original(session: TherapySession) -> Invoice | None:
    """The original invoice a full credit voided: still the estimate (P2), and what adjustments link to. An
    original a person voided is not (as before: the estimate is then $0.00)."""
    voided = Invoice.objects.filter(session=session, status=Invoice.Status.VOID).exclude(kind=Invoice.Kind.ADJUSTMENT)
    return voided.filter(credits__isnull=False).distinct().first()


def _settle(
    *,
    claim: Claim,
    payment: ClaimPayment,
    invoices: list[Invoice],
    original: Invoice | None,
    estimated: Invoice | None,
    target: int,
    actor: Actor,
) -> ClaimPayment.Outcome:
    """Bring what the patient is billed for the session to `target`, without ever editing an issued amount: bill
    the difference as an adjustment invoice (after giving back our own earlier credits), void adjustment invoices
    still open (our own earlier true-ups), credit the open original invoice, or refund what was paid. What cannot
    be done that way (a payment in flight for the difference) changes nothing and is left for a person."""
    refunded = sum(claim.payments.exclude(pk=payment.pk).values_list("refund_cents", flat=True))
    billed = sum(i.owed_cents for i in invoices) - refunded
    if target < 0:  # a malformed decision (only a reversal line may be negative): never money out on its word
        message = (
            f"The plan's patient responsibility for this claim is negative ({format_cents(target)}); nothing was "
            "changed. Check the remittance with the payer."
        )
        claim.attention = message
        payment.note = message
        return ClaimPayment.Outcome.NEEDS_ATTENTION
    if target == billed:
        return ClaimPayment.Outcome.CONFIRMED
    restored = 0
    if target > billed:
        # A reversal or a higher decision undoes our own credits first (on the open original; a credit that voided
        # the original cannot reopen it, so its amount is billed as an adjustment below).
        restored = _credits_cancel(claim=claim, payment=payment, original=original, actor=actor)
        billed += restored
        if target == billed:
            payment.note = f"Credit of {format_cents(restored)} on {original.number if original else ''} canceled."
            return ClaimPayment.Outcome.ADJUSTED_UP
    if target > billed:
        _adjust_up(
            claim=claim, payment=payment, original=estimated, billed=billed, amount=target - billed, target=target,
            actor=actor,
        )  # fmt: skip
        return ClaimPayment.Outcome.ADJUSTED_UP

    open_adjustments = [i for i in invoices if i.kind == Invoice.Kind.ADJUSTMENT and i.status == Invoice.Status.OPEN]
    after_voids = billed - sum(i.owed_cents for i in open_adjustments)
    give_back = after_voids - target
    open_original = original if original is not None and original.status == Invoice.Status.OPEN else None
    credit = min(max(give_back, 0), open_original.owed_cents if open_original is not None else 0)
    refund = max(give_back, 0) - credit
    paid = sum(i.owed_cents for i in invoices if i.status == Invoice.Status.PAID) - refunded
    if refund > 0 and paid < refund:
        # What is left to give back is neither open nor paid: a payment is in flight. Money stays read-only.
        message = (
            f"The plan says the patient owes {format_cents(target)}, less than the {format_cents(billed)} billed, "
            "and part of it is being paid right now: once the payment settles, import the file again or refund "
            "the difference by hand."
        )
        claim.attention = message
        payment.note = message
        return ClaimPayment.Outcome.NEEDS_ATTENTION
    for invoice in open_adjustments:
        reason = f"The plan changed its decision on claim {claim.claim_number} (remittance {payment.trace_number})."
        invoice_void(invoice_id=invoice.pk, reason=reason, actor=actor)
    notes = [f"Voided {', '.join(i.number for i in open_adjustments)}."] if open_adjustments else []
    if restored:
        notes.insert(0, f"Credit of {format_cents(restored)} canceled.")
    if credit and open_original is not None:
        _credit_apply(
            claim=claim, payment=payment, invoice=open_original, amount_cents=credit, target=target, actor=actor
        )
        notes.append(f"{open_original.number} reduced by {format_cents(credit)} (a credit).")
    if refund > 0:
        payment.refund_cents = refund
        notes.insert(0, f"{format_cents(refund)} goes back to the card (the plan decided the patient owes less).")
        payment.note = " ".join(notes)
        return ClaimPayment.Outcome.REFUNDED
    if give_back < 0:
        reissued = _adjust_up(
            claim=claim, payment=payment, original=estimated, billed=after_voids, amount=-give_back, target=target,
            actor=actor,
        )  # fmt: skip
        notes.append(f"The difference is reissued as {reissued.number}.")
    payment.note = " ".join(notes)
    return ClaimPayment.Outcome.REDUCED


def _credit_apply(
    *, claim: Claim, payment: ClaimPayment, invoice: Invoice, amount_cents: int, target: int, actor: Actor
) -> InvoiceCredit:
    """Take `amount_cents` off an open invoice (locked by the caller) through a credit; the issued amount stays.
    A credit that leaves nothing to pay voids the invoice, with the plan's decision as the reason."""
    credit = InvoiceCredit.objects.create(
        invoice=invoice,
        claim=claim,
        claim_payment=payment,
        amount_cents=amount_cents,
        reason=f"The plan decided the patient owes {format_cents(target)} on claim {claim.claim_number}.",
    )
    invoice.credited_cents += amount_cents
    invoice.save(update_fields=["credited_cents"])
    audit_record(
        actor=actor,
        action=AuditAction.INVOICE_CREDITED,
        obj=invoice,
        amount_cents=amount_cents,
        claim_payment_id=payment.pk,
        credit_id=credit.pk,
    )
    if invoice.owed_cents == 0:
        invoice_void(
            invoice_id=invoice.pk,
            reason=f"Nothing left to pay: the plan decided the patient owes {format_cents(target)} "
            f"(claim {claim.claim_number}, remittance {payment.trace_number}).",
            actor=actor,
        )
        invoice.status = Invoice.Status.VOID
    return credit


def _credits_cancel(*, claim: Claim, payment: ClaimPayment, original: Invoice | None, actor: Actor) -> int:
    """Cancel the claim's live credits on invoices not paid (a later decision undoes them). Returns what comes back
    onto an open invoice (a credit that voided its invoice comes back as an adjustment instead)."""
    live = list(
        InvoiceCredit.objects.select_for_update()
        .filter(claim=claim, canceled_at__isnull=True)
        .exclude(invoice__status__in=[Invoice.Status.PAID, Invoice.Status.PROCESSING])
        .select_related("invoice")
    )
    restored = 0
    for credit in live:
        credit.canceled_at, credit.canceled_by = timezone.now(), payment
        credit.save(update_fields=["canceled_at", "canceled_by"])
        audit_record(
            actor=actor, action=AuditAction.INVOICE_CREDIT_CANCELED, obj=credit.invoice, credit_id=credit.pk,
            amount_cents=credit.amount_cents, claim_payment_id=payment.pk,
        )  # fmt: skip
        if original is not None and credit.invoice_id == original.pk and original.status == Invoice.Status.OPEN:
            original.credited_cents -= credit.amount_cents
            restored += credit.amount_cents
        else:
            taken_back = F("credited_cents") - credit.amount_cents
            Invoice.objects.filter(pk=credit.invoice_id).update(credited_cents=taken_back)
    if restored and original is not None:
        original.save(update_fields=["credited_cents"])
    return restored


def _adjust_up(
    *,
    claim: Claim,
    payment: ClaimPayment,
    original: Invoice | None,
    billed: int,
    amount: int,
    target: int,
    actor: Actor,
) -> Invoice:
    adjustment = _adjustment_invoice(
        session=claim.session,
        original=original,
        payment=payment,
        billed_cents=billed,
        amount_cents=amount,
        plan_cents=target,
    )
    payment.adjustment_invoice = adjustment
    audit_record(
        actor=actor, action=AuditAction.INVOICE_ISSUED, obj=adjustment, amount_cents=amount, session_id=claim.session_id
    )
    enqueue_on_commit(invoice_email_task, adjustment.pk)
    return adjustment


def _adjustment_invoice(
    *,
    session: TherapySession,
    original: Invoice | None,
    payment: ClaimPayment,
    billed_cents: int,
    amount_cents: int,
    plan_cents: int,
) -> Invoice:
    itemized = payment.adjustments if payment.status_code != REVERSAL else []
    lines = [
        f"{_PR_REASONS.get(a['reason'], 'Reason ' + a['reason'])} {format_cents(a['amount_cents'])}"
        for a in itemized
        if a["group"] == "PR"
    ]
    estimate = original.amount_cents if original is not None else 0
    if billed_cents == estimate and original is not None:
        billed = f"Estimated {format_cents(billed_cents)} on {timezone.localtime(original.issued_at):%B %-d, %Y}"
    elif billed_cents == estimate:
        billed = f"Estimated {format_cents(billed_cents)}"
    else:
        billed = f"Billed so far {format_cents(billed_cents)} (estimated {format_cents(estimate)})"
    itemization = f" ({'; '.join(lines)})" if lines else ""
    note = (
        f"{billed}. Your plan's decision on claim {payment.claim_number}: you owe {format_cents(plan_cents)}"
        f"{itemization}. Difference: {format_cents(amount_cents)}."
    )
    invoice = Invoice.objects.create(
        number=f"pending-adj-{payment.pk}",
        session=session,
        patient_id=session.patient_id,
        provider_id=session.provider_id,
        practice_id=session.provider.practice_id,
        kind=Invoice.Kind.ADJUSTMENT,
        adjusts=original,
        amount_cents=amount_cents,
        calculation={
            "method": "plan_decision",
            "note": note,  # for staff; the patient reads it translated from the figures (invoices.explain)
            "claim_number": payment.claim_number,
            "estimated_cents": estimate,
            "estimated_on": f"{timezone.localtime(original.issued_at):%B %-d, %Y}" if original is not None else "",
            "estimate_cents": billed_cents,
            "plan_responsibility_cents": plan_cents,
            "adjustments": itemized,
            "amount_cents": amount_cents,
        },
    )
    invoice.number = f"INV-{invoice.pk:07d}"
    invoice.save(update_fields=["number"])
    return invoice


_PR_REASONS = {"1": "Deductible", "2": "Coinsurance", "3": "Copay"}


def claim_refunds_due() -> int:
    """Make the refunds imports decided and Stripe has not made yet (each import retries what an earlier one could
    not). Returns how many are still waiting for Stripe."""
    waiting = 0
    for line_id in ClaimPayment.objects.filter(refund_cents__gt=0, refund__isnull=True).values_list("pk", flat=True):
        try:
            claim_refund_make(claim_payment_id=line_id)
        except TransportError as error:
            waiting += 1
            logger.warning("refund for claim payment %s not made (%s); the next import retries it", line_id, error)
    return waiting


def claim_refund_make(*, claim_payment_id: int) -> Refund | None:
    """Refund what one remittance line decided, once (the line is locked and records the refund), then email the
    patient a plain notice. Returns None when it was already made or nothing paid through Alma can be refunded."""
    with transaction.atomic():
        line = (
            ClaimPayment.objects.select_for_update(of=("self",))
            .select_related("claim__session__patient")
            .get(pk=claim_payment_id)
        )
        if line.refund_id is not None or line.refund_cents <= 0 or line.claim is None:
            return None
        session = line.claim.session
        paid = list(session.invoices.filter(status=Invoice.Status.PAID).values_list("pk", flat=True))
        refunds = refund_for_claim(
            invoice_ids=paid,
            amount_cents=line.refund_cents,
            key=f"claim-line-{line.pk}",
            note=f"Claim {line.claim_number}: the plan decided the patient owes less.",
        )
        if not refunds:
            line.claim.attention = (
                f"{format_cents(line.refund_cents)} is due back but nothing paid through Alma is left."
            )
            line.claim.save(update_fields=["attention"])
            return None
        line.refund = refunds[-1]
        line.save(update_fields=["refund"])
        audit_record(actor=SYSTEM, action=AuditAction.CLAIM_REFUNDED, obj=line.claim, amount_cents=line.refund_cents)
    patient = session.patient
    if patient.email:
        try:
            send_patient_email(
                to=patient.email,
                subject=gettext_lazy("A refund from Alma"),
                template="emails/claim_refund",
                context={"first_name": patient.first_name, "amount": format_cents(line.refund_cents)},
                language=patient.preferred_language,
            )
        except Exception:  # the refund is made and recorded; a lost notice must not undo it
            logger.warning("refund notice for claim payment %s not sent", line.pk, exc_info=True)
    return refunds[-1]
