"""Writes for sessions and invoices: each is atomic, locks what it changes and writes an audit event."""

import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Func, Value
from django.utils import timezone
from django.utils.translation import gettext_lazy

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_batch, audit_record
from alma_billing.core.errors import ServiceError
from alma_billing.core.mail import send_patient_email
from alma_billing.core.queue import enqueue_on_commit
from invoices import hooks, selectors
from invoices.deliverability import UNDELIVERABLE_PROBLEM
from invoices.explain import EAP_NOT_COVERED
from invoices.models import EapAuthorization, EligibilitySnapshot, Invoice, Patient, TherapySession
from invoices.responsibility import PlanTerms, patient_responsibility

logger = logging.getLogger(__name__)

Outcome = TherapySession.Outcome


@dataclass(frozen=True)
class _Charge:
    kind: str
    amount_cents: int
    calculation: dict[str, Any]
    snapshot: EligibilitySnapshot | None = None
    deductible_cents: int = 0


@dataclass(frozen=True)
class _NoCharge:
    note: str


@dataclass(frozen=True)
class _Attention:
    reason: str


_Decision = _Charge | _NoCharge | _Attention


def session_complete(*, session_id: int, actor: Actor) -> TherapySession:
    """Mark a session completed and queue its invoice (P1). Completing twice changes nothing."""
    from invoices.tasks import invoice_issue_task  # here: invoices.tasks imports these services

    with transaction.atomic():
        session = TherapySession.objects.select_for_update().get(pk=session_id)
        if session.status == TherapySession.Status.COMPLETED:
            return session
        if session.status == TherapySession.Status.CANCELED:
            raise ServiceError(f"Session #{session.pk} was canceled and cannot be completed.")
        session.status = TherapySession.Status.COMPLETED
        session.completed_at = timezone.now()
        session.save(update_fields=["status", "completed_at"])
        audit_record(actor=actor, action=AuditAction.SESSION_COMPLETED, obj=session)
        enqueue_on_commit(invoice_issue_task, session.pk)
    return session


def invoice_issue(*, session_id: int, actor: Actor = SYSTEM, announce: bool = False) -> Invoice | None:
    """Bill a completed session exactly once: an invoice, nothing owed, or a flag for ops with the reason.

    Safe to run any number of times, concurrently too: the session row is locked and its outcome recorded.
    The new invoice is announced (autopay notice or link email) by the email task queued after the commit, or, with
    `announce`, in the same transaction and commit (the issue task: one task, one commit per invoice). A failed
    announcement then undoes only itself (a savepoint): the invoice is committed, the error raised afterwards (the
    task retries), and the sweep emails whatever is still unannounced. Running it again announces an invoice that
    is not yet announced.
    """
    from invoices.tasks import invoice_email_task  # here: invoices.tasks imports these services

    failure: Exception | None = None
    with transaction.atomic(), audit_batch():  # its events (issued, claim, emailed) in one INSERT before the commit
        sessions = TherapySession.objects.select_for_update(of=("self",)).select_related(
            "patient", "provider__practice", "eap_authorization"
        )
        if connection.vendor == "postgresql":  # the invoice's id, so its INSERT writes its number (no UPDATE)
            sessions = sessions.annotate(reserved_invoice_id=_next_invoice_id())
        session = sessions.get(pk=session_id)
        if session.status != TherapySession.Status.COMPLETED:
            raise ServiceError(f"Session #{session.pk} is not completed, so it cannot be billed yet.")
        if session.billing_outcome != Outcome.PENDING:
            invoice = Invoice.objects.filter(session=session).exclude(kind=Invoice.Kind.ADJUSTMENT).first()
            if announce and invoice is not None and _unannounced(invoice):
                failure = _announce_here(invoice, created_here=False)
        else:
            invoice = _bill(session, actor=actor)
            if invoice is not None and announce:
                failure = _announce_here(invoice, created_here=True)
            elif invoice is not None:
                enqueue_on_commit(invoice_email_task, invoice.pk)
    if failure is not None:
        raise failure
    return invoice


def _bill(session: TherapySession, *, actor: Actor) -> Invoice | None:
    """Inside invoice_issue's transaction, the session locked and still pending: decide, record, open the claim."""
    decision = _decide(session)
    if isinstance(decision, _Attention):
        session.billing_outcome, session.billing_note = Outcome.NEEDS_ATTENTION, decision.reason
        session.save(update_fields=["billing_outcome", "billing_note"])
        audit_record(actor=actor, action=AuditAction.SESSION_NEEDS_ATTENTION, obj=session, reason=decision.reason)
        logger.info("session %s flagged for ops; the reason is on the session", session.pk)  # no dates, no EAP
        return None
    if isinstance(decision, _NoCharge):
        session.billing_outcome, session.billing_note = Outcome.NO_CHARGE, decision.note
        session.save(update_fields=["billing_outcome", "billing_note"])
        audit_record(actor=actor, action=AuditAction.SESSION_NO_CHARGE, obj=session, note=decision.note)
        hooks.claim_open.call(session)  # a $0 estimate still goes to the plan (P13)
        return None
    invoice_id = getattr(session, "reserved_invoice_id", None)
    invoice = _invoice_create(session=session, charge=decision, actor=actor, invoice_id=invoice_id)
    hooks.claim_open.call(session)
    return invoice


def _unannounced(invoice: Invoice) -> bool:
    """Nothing told the patient about this invoice yet (what the sweep looks for too)."""
    return invoice.status == Invoice.Status.OPEN and invoice.emailed_at is None and not invoice.email_problem


def _announce_here(invoice: Invoice, *, created_here: bool) -> Exception | None:
    """Announce inside the caller's transaction, in a savepoint: a failure undoes the announcement only, and is
    returned for the caller to raise once the invoice is committed. An invoice created in this transaction is
    handed over as it is (nobody else can see it yet); an earlier one is read and locked by the announcement."""
    try:
        with transaction.atomic(), audit_batch():  # a failure drops the announcement's events with it
            hooks.invoice_announce.call(invoice_id=invoice.pk, invoice=invoice if created_here else None)
    except Exception as error:  # the invoice stands; the task's retry or the sweep announces it
        logger.warning("invoice %s issued but not announced (%s); retried", invoice.pk, type(error).__name__)
        return error
    return None


def invoice_charge_self_pay(*, session_id: int, amount_cents: int, actor: Actor) -> Invoice:
    """A provider charges an out-of-pocket invoice for a completed session that has none yet (P1)."""
    from invoices.tasks import invoice_email_task  # here: invoices.tasks imports these services

    if amount_cents <= 0:
        raise ServiceError("A self-pay amount must be more than $0.00.")
    with transaction.atomic():
        session = (
            TherapySession.objects.select_for_update(of=("self",))
            .select_related("provider__practice")
            .get(pk=session_id)
        )
        if session.status != TherapySession.Status.COMPLETED:
            raise ServiceError(f"Session #{session.pk} is not completed, so it cannot be charged.")
        if session.billing_outcome == Outcome.INVOICED or Invoice.objects.filter(session=session).exists():
            raise ServiceError(f"Session #{session.pk} already has an invoice.")
        if session.billing_outcome == Outcome.NO_CHARGE and session.billing_type == TherapySession.BillingType.EAP:
            raise ServiceError(f"Session #{session.pk} was covered by an EAP authorization; the patient owes nothing.")
        session.billing_type = TherapySession.BillingType.SELF_PAY
        session.self_pay_rate_cents = amount_cents
        session.save(update_fields=["billing_type", "self_pay_rate_cents"])
        charge = _Charge(
            kind=Invoice.Kind.SELF_PAY,
            amount_cents=amount_cents,
            calculation={"method": "self_pay", "rate_cents": amount_cents, "amount_cents": amount_cents},
        )
        invoice = _invoice_create(session=session, charge=charge, actor=actor)
        enqueue_on_commit(invoice_email_task, invoice.pk)
    return invoice


def invoice_email_send(*, invoice_id: int, invoice: Invoice | None = None) -> bool:
    """Email the patient a fresh pay link for an invoice, once. Returns whether an email went out.

    The email is sent inside the transaction that records it: if sending fails nothing is recorded and the
    sweep tries again; if the commit fails after sending, the patient may get the same email twice (never none).
    `invoice`: the caller's copy, created or locked in the caller's open transaction with its patient loaded
    (invoice_issue's announcement), used as it is instead of being read and locked again.
    """
    # No savepoint of its own: an error undoes the caller's transaction (or the savepoint it announces in).
    with transaction.atomic(savepoint=False):
        if invoice is None:
            invoice = Invoice.objects.select_for_update(of=("self",)).select_related("patient").get(pk=invoice_id)
        if invoice.emailed_at is not None or invoice.status != Invoice.Status.OPEN or invoice.email_problem:
            return False
        if not invoice.patient.email:
            invoice.email_problem = "The patient has no email address on file."
            invoice.save(update_fields=["email_problem"])
            audit_record(actor=SYSTEM, action=AuditAction.INVOICE_EMAIL_SKIPPED, obj=invoice, reason="no email address")
            return False
        if invoice.patient.email_undeliverable_reason:
            # The email service reported the address bouncing (invoices/deliverability.py): updating it sends this.
            invoice.email_problem = UNDELIVERABLE_PROBLEM
            invoice.save(update_fields=["email_problem"])
            audit_record(
                actor=SYSTEM,
                action=AuditAction.INVOICE_EMAIL_SKIPPED,
                obj=invoice,
                reason="email undeliverable",
                code=invoice.patient.email_undeliverable_reason,
            )
            return False
        link_id = _email_link(invoice)
        invoice.emailed_at = timezone.now()
        invoice.save(update_fields=["emailed_at"])
        audit_record(actor=SYSTEM, action=AuditAction.INVOICE_EMAILED, obj=invoice, pay_link_id=link_id)
    logger.info("invoice %s emailed to patient %s", invoice.pk, invoice.patient_id)
    return True


def invoice_resend_link(*, invoice_id: int, actor: Actor) -> None:
    """Staff send the patient a fresh link for an open invoice (e.g. the first email was lost)."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update(of=("self",)).select_related("patient").get(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            raise ServiceError(f"{invoice.number} is {invoice.get_status_display().lower()}; there is nothing to pay.")
        if not invoice.patient.email:
            raise ServiceError(f"{invoice.number}: the patient has no email address on file. Add one first.")
        link_id = _email_link(invoice)
        invoice.emailed_at, invoice.email_problem = invoice.emailed_at or timezone.now(), ""
        invoice.save(update_fields=["emailed_at", "email_problem"])
        audit_record(actor=actor, action=AuditAction.INVOICE_LINK_RESENT, obj=invoice, pay_link_id=link_id)


def _email_link(invoice: Invoice) -> int:
    link, context = hooks.pay_link_email_context.call(patient=invoice.patient, invoice=invoice)
    send_patient_email(
        to=invoice.patient.email,
        subject=gettext_lazy("You have a new invoice from Alma"),
        template="emails/invoice_issued",
        context=context,
        language=invoice.patient.preferred_language,
    )
    return link.pk


def invoice_void(*, invoice_id: int, reason: str, actor: Actor) -> Invoice:
    """Ops void an open invoice with a reason (e.g. reconciling a payment made outside the platform)."""
    if not reason.strip():
        raise ServiceError("Give a reason for voiding; it is kept with the invoice.")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            raise ServiceError(
                f"{invoice.number} is {invoice.get_status_display().lower()}; only open invoices can be voided "
                "(refund a paid one from its payment)."
            )
        invoice.status, invoice.voided_at, invoice.void_reason = Invoice.Status.VOID, timezone.now(), reason.strip()
        invoice.save(update_fields=["status", "voided_at", "void_reason"])
        hooks.invoice_voided.call(invoice_id=invoice.pk, reason="Invoice voided.")
        audit_record(actor=actor, action=AuditAction.INVOICE_VOIDED, obj=invoice, reason=reason.strip())
    return invoice


def invoice_report_outside_payment(*, invoice_id: int, note: str, actor: Actor) -> Invoice:
    """P3: the patient says they paid outside the platform. The invoice stays open; reminders go on; ops look."""
    if not note.strip():
        raise ServiceError("Say what the patient reported (how, when, how much).")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            raise ServiceError(f"{invoice.number} is {invoice.get_status_display().lower()}, not open.")
        invoice.outside_payment_reported_at = timezone.now()
        invoice.outside_payment_note = note.strip()
        invoice.save(update_fields=["outside_payment_reported_at", "outside_payment_note"])
        audit_record(actor=actor, action=AuditAction.INVOICE_OUTSIDE_PAYMENT_REPORTED, obj=invoice, note=note.strip())
    return invoice


def patient_phone_change(*, patient_id: int, phone: str, actor: Actor) -> Patient:
    """The phone number controls access to the pay link: changing it is audited and ends every live link."""
    e164 = hooks.phone_normalize.call(phone)
    if e164 is None:
        raise ServiceError("Enter a valid US phone number with area code.")
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        if patient.phone and patient.phone.as_e164 == e164:
            return patient
        patient.phone = e164
        patient.save(update_fields=["phone"])
        # No numbers in the audit trail (privacy): the fact, the actor and the last two digits.
        audit_record(actor=actor, action=AuditAction.PATIENT_PHONE_CHANGED, obj=patient, ends_in=e164[-2:])
        hooks.pay_links_revoke.call(patient=patient, reason="The phone number on the profile changed.", actor=actor)
        # Old links stop working, so a patient with something to pay gets a fresh one right away.
        latest_open = patient.invoices.filter(status=Invoice.Status.OPEN).order_by("-issued_at").first()
        if latest_open is not None and patient.email:
            _email_link(latest_open)
    return patient


def _next_invoice_id() -> Func:
    """PostgreSQL: a fresh invoice id from the table's own sequence, left unused if the session is not invoiced
    (invoice ids, and so their numbers, already skip the values of rolled-back inserts)."""
    sequence = Func(Value(Invoice._meta.db_table), Value("id"), function="pg_get_serial_sequence")
    return Func(sequence, function="nextval", output_field=BigIntegerField())


def _invoice_create(
    *, session: TherapySession, charge: _Charge, actor: Actor, invoice_id: int | None = None
) -> Invoice:
    """The invoice, numbered from its id: `invoice_id` (reserved from the sequence) lets its INSERT write the
    number; without it the number is written by an UPDATE once the INSERT has given the id."""
    invoice = Invoice.objects.create(  # objects, not ids: the announcement uses the patient and practice loaded
        id=invoice_id,
        number=f"pending-{session.pk}" if invoice_id is None else _invoice_number(invoice_id),
        session=session,
        patient=session.patient,
        provider=session.provider,
        practice=session.provider.practice,
        kind=charge.kind,
        amount_cents=charge.amount_cents,
        eligibility_snapshot=charge.snapshot,
        deductible_applied_cents=charge.deductible_cents,
        calculation=charge.calculation,
    )
    if invoice_id is None:
        invoice.number = _invoice_number(invoice.pk)
        invoice.save(update_fields=["number"])
    session.billing_outcome, session.billing_note = Outcome.INVOICED, ""
    session.save(update_fields=["billing_outcome", "billing_note"])
    audit_record(
        actor=actor,
        action=AuditAction.INVOICE_ISSUED,
        obj=invoice,
        amount_cents=invoice.amount_cents,
        session_id=session.pk,
    )
    return invoice


def _invoice_number(invoice_id: int) -> str:
    return f"INV-{invoice_id:07d}"


def _decide(session: TherapySession) -> _Decision:
    if session.billing_type == TherapySession.BillingType.SELF_PAY:
        return _self_pay(session) or _Attention("Self-pay session without a self-pay rate.")
    if session.billing_type == TherapySession.BillingType.EAP:
        return _eap(session)
    return _insurance(session)


def _self_pay(session: TherapySession) -> _Charge | None:
    if not session.self_pay_rate_cents:
        return None
    rate = session.self_pay_rate_cents
    return _Charge(
        kind=Invoice.Kind.SELF_PAY,
        amount_cents=rate,
        calculation={"method": "self_pay", "rate_cents": rate, "amount_cents": rate},
    )


def _eap(session: TherapySession) -> _Decision:
    """P9: in-network Optum EAP sessions within the authorization cost nothing; past it, bill per the data."""
    authorization = session.eap_authorization or selectors.eap_authorization_for(
        patient_id=session.patient_id, day=session.date_of_service
    )
    if authorization is not None:
        authorization = EapAuthorization.objects.select_for_update().get(pk=authorization.pk)
        if authorization.patient_id != session.patient_id:
            return _Attention("The session's EAP authorization belongs to another patient.")
        if not authorization.in_network:
            name = authorization.program_name or authorization.get_program_display()
            return _Attention(
                f"EAP '{name}' is not in network: Alma is in network only with Optum Live & Work Well EAP and "
                "Optum Emotional Wellbeing Solutions. Bill the session as insurance or self-pay, or void it."
            )
        if authorization.covers(session.date_of_service):
            authorization.sessions_used += 1
            authorization.save(update_fields=["sessions_used"])
            if session.eap_authorization_id is None:
                session.eap_authorization = authorization
                session.save(update_fields=["eap_authorization"])
            return _NoCharge(
                f"EAP session {authorization.sessions_used} of {authorization.sessions_authorized} under "
                f"{authorization.get_program_display()} authorization {authorization.authorization_code}: "
                "nothing owed."
            )
    # No usable authorization (none, used up or expired): bill as insurance if we can, else self-pay.
    fallback: _Decision | None = None
    if session.allowed_amount_cents is not None and selectors.active_coverage_for(patient_id=session.patient_id):
        fallback = _insurance(session)
    else:
        fallback = _self_pay(session)
    if isinstance(fallback, _Charge):
        note = EAP_NOT_COVERED  # stored in English; shown translated (invoices/explain.py)
        return _Charge(**{**fallback.__dict__, "calculation": {**fallback.calculation, "note": note}})
    return fallback or _Attention(
        "EAP session outside any usable authorization (none, used up or expired), and the session has neither "
        "an insurance allowed amount nor a self-pay rate."
    )


def _insurance(session: TherapySession) -> _Decision:
    """P2: the most recent completed eligibility check at or before the session; never guessed."""
    no_coverage = _Attention("No active insurance coverage on file for the patient.")
    if session.allowed_amount_cents is None:
        if selectors.active_coverage_for(patient_id=session.patient_id) is None:
            return no_coverage
        return _Attention("The session has no allowed amount from the plan.")
    # The plan is locked with its check, so two sessions billed at once do not both spend the same remaining
    # deductible (eligibility_used_on below reads after the lock).
    snapshot = selectors.eligibility_check_locking_plan(patient_id=session.patient_id, day=session.date_of_service)
    if snapshot is None:
        if selectors.active_coverage_for(patient_id=session.patient_id) is None:
            return no_coverage
        return _Attention(f"No completed eligibility check on or before {session.date_of_service:%b %d, %Y}.")
    if not snapshot.plan_active:
        return _Attention(f"The plan was inactive at the eligibility check of {snapshot.checked_at:%b %d, %Y}.")

    # What earlier sessions on this check used: the plan's figures where it decided their claims (P13), else ours.
    deductible_used, amount_used = selectors.eligibility_used_on(snapshot=snapshot)
    terms = PlanTerms(
        copay_cents=snapshot.copay_cents,
        coinsurance_bp=snapshot.coinsurance_bp,
        deductible_remaining_cents=max(snapshot.deductible_remaining_cents - deductible_used, 0),
        oop_max_remaining_cents=None
        if snapshot.oop_max_remaining_cents is None
        else max(snapshot.oop_max_remaining_cents - amount_used, 0),
    )
    result = patient_responsibility(allowed_cents=session.allowed_amount_cents, terms=terms)
    calculation = {
        "method": "insurance",
        "snapshot_id": snapshot.pk,
        "checked_on": f"{timezone.localtime(snapshot.checked_at):%B %-d, %Y}",
        "copay_cents": snapshot.copay_cents,
        "coinsurance_bp": snapshot.coinsurance_bp,
        "deductible_checked": True,
        "deductible_remaining_cents": terms.deductible_remaining_cents + deductible_used,
        "deductible_used_by_earlier_cents": deductible_used,
        "oop_max_remaining_cents": terms.oop_max_remaining_cents,
        **result.as_dict(),
    }
    if result.amount_cents == 0:
        return _NoCharge(f"Nothing owed under the eligibility check of {calculation['checked_on']}.")
    return _Charge(
        kind=Invoice.Kind.INSURANCE,
        amount_cents=result.amount_cents,
        calculation=calculation,
        snapshot=snapshot,
        deductible_cents=min(result.deductible_cents, result.amount_cents),
    )
