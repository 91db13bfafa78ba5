"""The outbox sweep (DESIGN "Outbox, not hope"): bill, email and remind whatever a lost task left undone."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from invoices import hooks, reminders, selectors, services
from invoices.models import ReminderLog

logger = logging.getLogger(__name__)


def invoices_sweep_run() -> dict[str, int]:
    """Bill completed sessions, announce issued invoices and send planned reminders older than ISSUE_SWEEP_GRACE.
    Safe to run at any time and concurrently: each step is idempotent. Returns the counts."""
    cutoff = timezone.now() - settings.ISSUE_SWEEP_GRACE
    billed = emailed = 0
    for session_id in selectors.sessions_awaiting_billing(completed_before=cutoff).values_list("id", flat=True)[:1000]:
        try:
            services.invoice_issue(session_id=session_id, announce=True)  # as the lost task would have
            billed += 1
        except Exception:  # one bad session must not stop the sweep for everyone else
            logger.exception("sweep could not bill or announce session %s; next sweep retries", session_id)
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
