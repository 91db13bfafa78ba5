"""Writes for claims: open one per insurance session, and settle it from the plan's remittance (P13)."""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from alma_billing.core.audit import SYSTEM, Actor, audit_record
from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from alma_billing.core.queue import enqueue_on_commit
from claims.models import Claim, ClaimPayment, Remittance, claim_number_for
from claims.x12 import DENIED, REVERSAL, ClaimLine, parse_835
from invoices.models import Invoice, TherapySession
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
    claim, created = Claim.objects.get_or_create(
        session=session, defaults={"claim_number": claim_number_for(session.pk)}
    )
    if created:
        audit_record(actor=actor, action="claim.submitted", obj=claim, session_id=session.pk)
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


class _DryRun(Exception):
    """Raised at the end of a dry run to roll everything back."""


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
            audit_record(actor=actor, action="remittance.imported", obj=record, **summary.counts())
            summary.remittance_id = record.pk
            if dry_run:
                raise _DryRun
    except _DryRun:
        summary.remittance_id = None
        return summary
    claim_refunds_due()
    return summary


def _line_apply(*, remittance: Remittance, line: ClaimLine, actor: Actor) -> ClaimPayment | None:
    if ClaimPayment.objects.filter(
        trace_number=line.trace_number, claim_number=line.claim_number, payer_claim_number=line.payer_claim_number
    ).exists():
        return None
    claim = Claim.objects.select_for_update().filter(claim_number=line.claim_number).first()
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
        payment.note = "No claim with this number: check the CLP01 with the clearinghouse."
        payment.save()
        return payment
    payment.save()  # the true-up links to it; the dedupe constraint also holds against a concurrent import
    _true_up(claim=claim, payment=payment, actor=actor)
    payment.save()
    audit_record(
        actor=actor,
        action=f"claim.{payment.outcome}",
        obj=claim,
        remittance_id=remittance.pk,
        claim_payment_id=payment.pk,
        plan_responsibility_cents=payment.patient_responsibility_cents,
    )
    return payment


def _reason_codes(payment: ClaimPayment) -> str:
    return ", ".join(f"{a['group']}-{a['reason']}" for a in payment.adjustments) or "none given"


def _true_up(*, claim: Claim, payment: ClaimPayment, actor: Actor) -> None:
    """The plan's patient responsibility (CLP05) against what the patient is billed for this claim now."""
    now = timezone.now()
    session = claim.session
    claim.decided_at = now
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
    if payment.status_code == REVERSAL:
        _reverse(claim=claim, payment=payment, actor=actor)
        return

    plan_cents = payment.patient_responsibility_cents
    invoices = list(
        Invoice.objects.select_for_update().filter(session=session).exclude(status=Invoice.Status.VOID).order_by("id")
    )
    original = next((i for i in invoices if i.kind != Invoice.Kind.ADJUSTMENT), None)
    refunded = sum(claim.payments.exclude(pk=payment.pk).values_list("refund_cents", flat=True))
    billed = sum(i.amount_cents for i in invoices) - refunded
    difference = plan_cents - billed
    claim.plan_responsibility_cents = max(plan_cents, 0)

    if session.billing_type == TherapySession.BillingType.EAP and original is None and plan_cents > 0:
        _attention(
            claim,
            payment,
            f"EAP session: the plan says the patient owes {format_cents(plan_cents)}, "
            "but an Optum authorization keeps it at $0.00. Nothing was billed; check with the EAP.",
        )
    elif difference == 0:
        claim.status = Claim.Status.CONFIRMED
        payment.outcome = ClaimPayment.Outcome.CONFIRMED
    elif difference > 0:
        adjustment = _adjustment_invoice(
            session=session, original=original, payment=payment, billed_cents=billed, amount_cents=difference
        )
        claim.status = Claim.Status.ADJUSTED
        payment.outcome, payment.adjustment_invoice = ClaimPayment.Outcome.ADJUSTED_UP, adjustment
        audit_record(
            actor=actor, action="invoice.issued", obj=adjustment, amount_cents=difference, session_id=session.pk
        )
        enqueue_on_commit(invoice_email_task, adjustment.pk)
    else:
        give_back = -difference
        open_ones = [i for i in invoices if i.status in (Invoice.Status.OPEN, Invoice.Status.PROCESSING)]
        paid = sum(i.amount_cents for i in invoices if i.status == Invoice.Status.PAID) - refunded
        if open_ones or paid < give_back:
            # Money stays read-only: an open invoice is not edited, and we have no credit record yet.
            _attention(
                claim,
                payment,
                f"The plan says the patient owes {format_cents(plan_cents)}, less than the {format_cents(billed)} "
                "billed, and part of it is still open: reduce it by hand (void and recharge, or refund).",
            )
        else:
            claim.status = Claim.Status.ADJUSTED
            payment.outcome, payment.refund_cents = ClaimPayment.Outcome.REFUNDED, give_back
            payment.note = f"{format_cents(give_back)} goes back to the card (the plan decided the patient owes less)."
    claim.save(update_fields=["status", "decided_at", "plan_responsibility_cents", "attention"])


def _attention(claim: Claim, payment: ClaimPayment, message: str) -> None:
    claim.attention = message
    payment.outcome, payment.note = ClaimPayment.Outcome.NEEDS_ATTENTION, message


def _reverse(*, claim: Claim, payment: ClaimPayment, actor: Actor) -> None:
    """CLP02 22: the plan takes back an earlier decision. Adjustment invoices it caused that are still open are
    voided; money already moved (a paid adjustment, a refund) is left for a person."""
    earlier = claim.payments.exclude(pk=payment.pk).filter(payer_claim_number=payment.payer_claim_number)
    undone, left = [], []
    for line in earlier.select_related("adjustment_invoice"):
        invoice = line.adjustment_invoice
        if invoice is not None and invoice.status == Invoice.Status.OPEN:
            invoice_void(invoice_id=invoice.pk, reason=f"The plan reversed claim {claim.claim_number}.", actor=actor)
            undone.append(invoice.number)
        elif invoice is not None or line.refund_cents:
            left.append(str(line.pk))
    claim.status, claim.plan_responsibility_cents = Claim.Status.REVERSED, None
    payment.outcome = ClaimPayment.Outcome.REVERSED
    payment.note = f"Reversed {payment.payer_claim_number}; voided {', '.join(undone) or 'nothing'}."
    if left:
        claim.attention = f"Reversed after money moved (remittance lines {', '.join(left)}): settle it by hand."
        payment.note += " " + claim.attention
    claim.save(update_fields=["status", "decided_at", "plan_responsibility_cents", "attention"])


def _adjustment_invoice(
    *, session: TherapySession, original: Invoice | None, payment: ClaimPayment, billed_cents: int, amount_cents: int
) -> Invoice:
    lines = [
        f"{_PR_REASONS.get(a['reason'], 'Reason ' + a['reason'])} {format_cents(a['amount_cents'])}"
        for a in payment.adjustments
        if a["group"] == "PR"
    ]
    estimated = f"Estimated {format_cents(billed_cents)}"
    if original is not None:
        estimated += f" on {timezone.localtime(original.issued_at):%B %-d, %Y}"
    note = (
        f"{estimated}. Your plan's decision on claim {payment.claim_number}: you owe "
        f"{format_cents(payment.patient_responsibility_cents)} ({'; '.join(lines) or 'no itemization'}). "
        f"Difference: {format_cents(amount_cents)}."
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
            "note": note,
            "estimate_cents": billed_cents,
            "plan_responsibility_cents": payment.patient_responsibility_cents,
            "adjustments": payment.adjustments,
            "amount_cents": amount_cents,
        },
    )
    invoice.number = f"INV-{invoice.pk:07d}"
    invoice.save(update_fields=["number"])
    return invoice


_PR_REASONS = {"1": "Deductible", "2": "Coinsurance", "3": "Copay"}


def claim_refunds_due() -> int:
    """Make the refunds imports decided and Stripe has not made yet (also a retry after a failure). Returns how many."""
    done = 0
    for line_id in ClaimPayment.objects.filter(refund_cents__gt=0, refund__isnull=True).values_list("pk", flat=True):
        if claim_refund_make(claim_payment_id=line_id) is not None:
            done += 1
    return done


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
        audit_record(actor=SYSTEM, action="claim.refunded", obj=line.claim, amount_cents=line.refund_cents)
    patient = session.patient
    if patient.email:
        try:
            send_patient_email(
                to=patient.email,
                subject="A refund from Alma",
                template="emails/claim_refund",
                context={"first_name": patient.first_name, "amount": format_cents(line.refund_cents)},
            )
        except Exception:  # the refund is made and recorded; a lost notice must not undo it
            logger.warning("refund notice for claim payment %s not sent", line.pk, exc_info=True)
    return refunds[-1]
