"""Celery tasks: fetch by id, call a service. Idempotent, acks late, redelivered if a worker dies."""

import logging
from datetime import timedelta
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from invoices import hooks, reminders, selectors, services
from invoices.models import ReminderLog

logger = logging.getLogger(__name__)

_RETRYABLE = (OperationalError, SMTPException, ConnectionError, TimeoutError)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def invoice_issue_task(session_id: int) -> int | None:
    invoice = services.invoice_issue(session_id=session_id)
    return invoice.pk if invoice else None


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def invoice_email_task(invoice_id: int) -> bool:
    """A new invoice: the autopay notice or the link email (payments decides, through invoices/hooks.py)."""
    return hooks.invoice_announce.call(invoice_id=invoice_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def reminder_deliver_task(log_id: int) -> str:
    """One planned reminder (e.g. the fresh email after a bouncing address was updated); the sweep is its outbox."""
    try:
        return str(reminders.reminder_deliver(log_id=log_id))
    except reminders.ReminderNotSent:
        return "not_sent"  # the row is pending again: the sweep sends it


@shared_task(acks_late=True, reject_on_worker_lost=True)
def invoices_sweep() -> dict[str, int]:
    """Finish what a lost task left undone: bill completed sessions and email issued invoices."""
    cutoff = timezone.now() - settings.ISSUE_SWEEP_GRACE
    billed = emailed = 0
    for session_id in selectors.sessions_awaiting_billing(completed_before=cutoff).values_list("id", flat=True)[:1000]:
        try:
            services.invoice_issue(session_id=session_id)
            billed += 1
        except Exception:  # one bad session must not stop the sweep for everyone else
            logger.exception("sweep could not bill session %s", session_id)
    for invoice_id in selectors.invoices_awaiting_email(issued_before=cutoff).values_list("id", flat=True)[:1000]:
        try:
            emailed += hooks.invoice_announce.call(invoice_id=invoice_id)
        except Exception:
            logger.exception("sweep could not email invoice %s; next sweep retries", invoice_id)
    # Reminders a killed run planned but never sent; what it left mid-send is put in doubt for ops.
    reminders.reminders_mark_interrupted()
    stale = ReminderLog.objects.filter(status=ReminderLog.Status.PENDING, created_at__lt=cutoff - timedelta(minutes=8))
    reminded = 0
    for log_id in stale.values_list("id", flat=True)[:1000]:
        try:
            reminded += reminders.reminder_deliver(log_id=log_id) == reminders.Delivery.SENT
        except Exception:
            logger.exception("sweep could not send reminder %s", log_id)
    if billed or emailed or reminded:
        logger.info("sweep billed %s sessions, emailed %s invoices, sent %s reminders", billed, emailed, reminded)
    return {"billed": billed, "emailed": emailed, "reminded": reminded}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reminders_run_task() -> dict[str, int]:
    """P3, daily from beat. Safe to run twice or concurrently: one reminder per patient per day."""
    summary = reminders.reminders_run(triggered_by="beat")
    return {
        "reminded": summary.reminded,
        "invoices": summary.invoices,
        "failures": summary.failures,
        "in_doubt": summary.in_doubt,
    }
