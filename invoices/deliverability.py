"""Email deliverability (issue 15): addresses the email service reports bouncing, and what updating one does.

A bounce or spam complaint marks every patient with that address (case-insensitive) undeliverable, with a reason
code and when. Invoice emails and reminders skip such a patient and say so. When staff update the email, the flag
clears and the patient gets one fresh email listing everything open (a reminder through the reminder outbox).
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, tracking
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import receiver
from django.utils import timezone

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_record
from alma_billing.core.email_tracking import EventAlreadyReceived
from alma_billing.core.queue import enqueue_on_commit
from invoices.models import EmailEvent, EmailUndeliverable, Invoice, Patient, ReminderLog

logger = logging.getLogger(__name__)

# What an invoice's email_problem says when its email was skipped for a bouncing address (staff read it).
UNDELIVERABLE_PROBLEM = "The patient's email address is bouncing; update it to send the invoice."


def patients_with_address(address: str) -> QuerySet[Patient]:
    return Patient.objects.filter(email__iexact=address.strip())


def patient_email_undeliverable_mark(
    *, address: str, reason: str, event_id: int | None = None, occurred_at: datetime | None = None
) -> list[int]:
    """Mark every patient using `address` undeliverable; returns their ids (none for an unknown address).

    Call inside the transaction that records the event. A patient already marked keeps the first reason and time.
    """
    if reason not in EmailUndeliverable.values:
        raise ValueError(f"unknown undeliverable reason {reason!r}")
    if not address.strip():
        return []
    marked: list[int] = []
    for patient in patients_with_address(address).select_for_update().order_by("pk"):
        if patient.email_undeliverable_reason:
            continue
        patient.email_undeliverable_reason = reason
        patient.email_undeliverable_at = timezone.now()
        patient.save(update_fields=["email_undeliverable_reason", "email_undeliverable_at"])
        # No address in the audit trail: the patient is the object, the reason a code.
        audit_record(
            actor=Actor(label="email-service"),
            action=AuditAction.PATIENT_EMAIL_UNDELIVERABLE,
            obj=patient,
            reason=reason,
            email_event_id=event_id,
            occurred_at=occurred_at.isoformat() if occurred_at else None,
        )
        marked.append(patient.pk)
    if marked:
        logger.info("email undeliverable (%s) for patients %s", reason, marked)
    return marked


@dataclass(frozen=True)
class EmailUpdateResult:
    cleared: bool  # the address had been marked undeliverable
    reminder_id: int | None  # the fresh email queued (a reminder listing everything open), if any


def patient_email_updated(*, patient_id: int, actor: Actor = SYSTEM) -> EmailUpdateResult:
    """Staff changed a patient's email: clear the undeliverable flag and queue one fresh email of what is open.

    The email is a reminder row (the reminder outbox: the sweep delivers it if the queued task is lost). Invoices
    whose own email was skipped are listed in it, so each is not also emailed on its own (one email, not several).
    """
    from invoices.tasks import reminder_deliver_task  # here: invoices.tasks imports services, which import this

    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        known_bad = (
            patients_with_address(patient.email)
            .exclude(pk=patient.pk)
            .exclude(email_undeliverable_reason="")
            .values_list("email_undeliverable_reason", flat=True)
            .first()
            if patient.email
            else None
        )
        if known_bad:
            # The new address is one the email service already reported for another patient: still bouncing.
            if patient.email_undeliverable_reason != known_bad:
                patient.email_undeliverable_reason, patient.email_undeliverable_at = known_bad, timezone.now()
                patient.save(update_fields=["email_undeliverable_reason", "email_undeliverable_at"])
                audit_record(actor=actor, action=AuditAction.PATIENT_EMAIL_UNDELIVERABLE, obj=patient, reason=known_bad)
            return EmailUpdateResult(cleared=False, reminder_id=None)
        cleared = bool(patient.email_undeliverable_reason)
        if cleared:
            was = patient.email_undeliverable_reason
            patient.email_undeliverable_reason, patient.email_undeliverable_at = "", None
            patient.save(update_fields=["email_undeliverable_reason", "email_undeliverable_at"])
            audit_record(actor=actor, action=AuditAction.PATIENT_EMAIL_UNDELIVERABLE_CLEARED, obj=patient, was=was)
        if not patient.email:
            return EmailUpdateResult(cleared=cleared, reminder_id=None)
        open_invoices = list(
            Invoice.objects.select_for_update(of=("self",))
            .filter(patient=patient, status=Invoice.Status.OPEN)
            .order_by("issued_at", "id")
        )
        skipped = [i for i in open_invoices if i.emailed_at is None and i.email_problem]
        if not (cleared or skipped) or not open_invoices:
            return EmailUpdateResult(cleared=cleared, reminder_id=None)
        log = _reminder_for_today(patient=patient, invoices=open_invoices)
        if log is None:
            # Today's reminder already went out (at most one a day): the skipped invoices are emailed on their own.
            from invoices.tasks import invoice_email_task  # here: see reminder_deliver_task above

            for invoice in skipped:
                invoice.email_problem = ""
                invoice.save(update_fields=["email_problem"])
                enqueue_on_commit(invoice_email_task, invoice.pk)
            return EmailUpdateResult(cleared=cleared, reminder_id=None)
        now = timezone.now()
        for invoice in skipped:
            # Its announcement is the reminder just queued (the outbox row), not an email of its own.
            invoice.emailed_at, invoice.email_problem = now, ""
            invoice.save(update_fields=["emailed_at", "email_problem"])
            audit_record(actor=actor, action=AuditAction.INVOICE_EMAILED, obj=invoice, via_reminder_id=log.pk)
        audit_record(actor=actor, action=AuditAction.PATIENT_EMAIL_RESEND_QUEUED, obj=patient, reminder_id=log.pk)
        enqueue_on_commit(reminder_deliver_task, log.pk)
    return EmailUpdateResult(cleared=cleared, reminder_id=log.pk)


def _reminder_for_today(*, patient: Patient, invoices: list[Invoice]) -> ReminderLog | None:
    """Today's reminder row for the patient, pending: a new one, or today's skipped/failed one re-armed. None when
    today's reminder is already out or on its way (at most one reminder a day)."""
    today = timezone.localdate()
    fields = {
        "status": ReminderLog.Status.PENDING,
        "reason": "Email address updated: resent.",
        "invoice_ids": [i.pk for i in invoices],
        "total_cents": sum(i.amount_cents for i in invoices),
    }
    log = ReminderLog.objects.select_for_update().filter(patient=patient, sent_on=today).first()
    if log is None:
        return ReminderLog.objects.create(patient=patient, sent_on=today, **fields)
    if log.status not in (ReminderLog.Status.SKIPPED, ReminderLog.Status.FAILED):
        return None
    for name, value in fields.items():
        setattr(log, name, value)
    log.attempts = 0
    log.save(update_fields=[*fields, "attempts"])
    return log


def _undeliverable_reason(event: AnymailTrackingEvent) -> str:
    """The code stored on the patient, or "" when the event says nothing against the address."""
    if event.event_type == EventType.BOUNCED:
        return "bounced"
    if event.event_type == EventType.COMPLAINED:
        return "complained"
    if event.event_type == EventType.REJECTED and event.reject_reason in (
        RejectReason.BOUNCED,
        RejectReason.SPAM,
        RejectReason.INVALID,
        RejectReason.BLOCKED,
    ):
        return "rejected"
    return ""


@receiver(tracking, dispatch_uid="alma-email-tracking")
def email_tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    """Record the event once (a replay raises EventAlreadyReceived) and mark the address's patients."""
    provider = str(esp_name).lower()[:32]
    event_id = str(event.event_id or "")[:128]
    if not event_id:
        raise EventAlreadyReceived("an event without an id cannot be deduplicated")
    reason = _undeliverable_reason(event)
    if EmailEvent.objects.filter(provider=provider, event_id=event_id).exists():
        raise EventAlreadyReceived(event_id)
    row = EmailEvent.objects.create(
        provider=provider,
        event_id=event_id,
        event_type=str(event.event_type)[:32],
        reason=reason,
        occurred_at=event.timestamp,
    )
    recipient = event.recipient if isinstance(event.recipient, str) else ""
    if reason and recipient and len(recipient) <= 254:
        marked = patient_email_undeliverable_mark(
            address=recipient, reason=reason, event_id=row.pk, occurred_at=event.timestamp
        )
        if marked:
            row.patients_marked = len(marked)
            row.save(update_fields=["patients_marked"])
    logger.info("email event %s (%s) recorded; %s patient(s) marked", row.pk, row.event_type, row.patients_marked)
