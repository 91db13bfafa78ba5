"""Reconciliation: ask Stripe about payments still in flight, so a lost webhook never loses a payment."""

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from alma_billing.core.errors import TransportError
from payments import receipts, services
from payments.gateways import stripe as gateway
from payments.models import CardToDetach, Payment, PaymentAllocation

logger = logging.getLogger(__name__)

NEVER_SENT = gettext_noop("The payment was not completed. Nothing was charged.")
ABANDONED_AFTER = timedelta(hours=1)


@dataclass
class ReconcileSummary:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    still_open: int = 0
    unknown_at_stripe: int = 0
    flagged: int = 0
    refunds: int = 0
    receipts: int = 0
    cards_detached: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        """Whether nothing failed and nothing new needs a person (job runners and cron look at the exit code)."""
        return not (self.errors or self.flagged)


def payments_reconcile() -> ReconcileSummary:
    summary = ReconcileSummary()
    now = timezone.now()
    cutoff = now - settings.PAYMENT_RECONCILE_AFTER
    stale = Payment.objects.filter(status__in=Payment.OPEN_STATUSES, created_at__lt=cutoff).order_by("id")
    for payment_id, created_at, attention_at in stale.values_list("id", "created_at", "attention_at")[:1000]:
        summary.checked += 1
        _check(payment_id, created_at=created_at, now=now, summary=summary)
        # Whatever path flagged it (unknown at Stripe, not answering for too long, an intent that is not ours),
        # a payment newly needing a person is counted once, so the job's exit status says so.
        if attention_at is None and Payment.objects.filter(pk=payment_id, attention_at__isnull=False).exists():
            summary.flagged += 1
    _finish_lost_followups(cutoff, summary)
    logger.info("reconcile: %s", summary)
    return summary


def _check(payment_id: int, *, created_at: datetime, now: datetime, summary: ReconcileSummary) -> None:
    try:
        payment = _reconcile_one(payment_id)
    except gateway.IntentUnknown:
        summary.unknown_at_stripe += 1
        try:
            services.payment_release_unknown(payment_id=payment_id)
        except TransportError:
            logger.exception("reconcile: Stripe did not answer about the customer of payment %s", payment_id)
            summary.errors += 1
        return
    except TransportError:
        logger.exception("reconcile: Stripe did not answer about payment %s", payment_id)
        summary.errors += 1
        if now - created_at > settings.PAYMENT_STUCK_AFTER:
            hours = int(settings.PAYMENT_STUCK_AFTER.total_seconds() // 3600)
            services.payment_flag(
                payment_id=payment_id,
                reason=f"Stripe has not answered about this payment for over {hours} hours; it still holds "
                "its invoices.",
            )
        return
    if payment.status == Payment.Status.SUCCEEDED:
        summary.succeeded += 1
    elif payment.status in Payment.OPEN_STATUSES:
        summary.still_open += 1
    else:
        summary.failed += 1


def _finish_lost_followups(cutoff: datetime, summary: ReconcileSummary) -> None:
    """Outbox, not hope: duplicate charges still to refund, and receipts still to send, whose task was lost."""
    surplus = PaymentAllocation.objects.filter(
        state=PaymentAllocation.State.SURPLUS, refunded_cents__lt=F("amount_cents"), payment__succeeded_at__lt=cutoff
    )
    for allocation_id in surplus.values_list("id", flat=True)[:1000]:
        try:
            if services.surplus_refund(allocation_id=allocation_id):
                summary.refunds += 1
        except TransportError:
            logger.exception("reconcile: could not refund duplicate allocation %s", allocation_id)
            summary.errors += 1
    unsent = (
        Payment.objects.filter(
            status=Payment.Status.SUCCEEDED,
            receipt_emailed_at__isnull=True,
            succeeded_at__lt=cutoff,
            allocations__state=PaymentAllocation.State.SETTLED,
        )
        .exclude(patient__email="")
        .distinct()
    )
    for payment_id in unsent.values_list("id", flat=True)[:1000]:
        try:
            summary.receipts += receipts.receipt_email_send(payment_id=payment_id)
        except Exception:
            logger.exception("reconcile: could not send the receipt for payment %s", payment_id)
            summary.errors += 1
    summary.receipts += receipts.receipts_link_requests_finish(cutoff=cutoff)
    cards = CardToDetach.objects.filter(created_at__lt=cutoff).order_by("id")
    for payment_method_id in cards.values_list("payment_method_id", flat=True)[:1000]:
        try:
            services.card_detach(payment_method_id=payment_method_id)
            summary.cards_detached += 1
        except TransportError:
            logger.exception("reconcile: could not detach card %s", payment_method_id)
            summary.errors += 1


def _reconcile_one(payment_id: int) -> Payment:
    payment = Payment.objects.get(pk=payment_id)
    if payment.stripe_payment_intent_id:
        payment = services.payment_refresh(payment_id=payment_id)
        if payment.status in Payment.OPEN_STATUSES and timezone.now() - payment.created_at > ABANDONED_AFTER:
            # Waiting for a card check the patient never finished: cancel it so the invoices can be paid again.
            payment = services.payment_cancel(payment_id=payment_id)
        return payment
    # Held but never sent to Stripe (the process died first): let the invoices go. Should Stripe have charged
    # after all, its webhook carries our payment id and settles or refunds it.
    return services.payment_abandon(payment_id=payment_id, message=NEVER_SENT)
