"""Celery tasks: fetch by id, call a service. Idempotent, acks late, redelivered if a worker dies."""

from smtplib import SMTPException

from celery import shared_task
from django.db import OperationalError

from invoices import hooks, reminders, services, sweep

_RETRYABLE = (OperationalError, SMTPException, ConnectionError, TimeoutError)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def invoice_issue_task(session_id: int) -> int | None:
    """A completed session: bill it and announce the invoice in one run and one commit (a retry does what is left)."""
    invoice = services.invoice_issue(session_id=session_id, announce=True)
    return invoice.pk if invoice else None


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def invoice_email_task(invoice_id: int) -> bool:
    """A new invoice not billed by invoice_issue_task (self-pay, adjustments, a fixed address): the autopay notice
    or the link email (payments decides, through invoices/hooks.py)."""
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
    """Every 5 minutes from beat: finish what a lost task left undone (invoices/sweep.py)."""
    return sweep.invoices_sweep_run()


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
