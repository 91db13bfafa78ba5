"""Celery tasks for payments: fetch by id, call a service. Idempotent, acks late."""

import logging

from celery import shared_task

from alma_billing.core.errors import TransportError
from payments import autopay, receipts, reconcile, services

logger = logging.getLogger(__name__)

_RETRYABLE = (TransportError, ConnectionError)


def _unless_permanent(error: TransportError) -> None:
    """Retrying cannot fix a permanent refusal: log it for staff instead of retrying."""
    if not error.permanent:
        raise error
    logger.error("permanent failure, not retried: %s", error.message)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=8)
def payment_receipt_task(payment_id: int) -> bool:
    return receipts.receipt_email_send(payment_id=payment_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=8)
def receipts_link_task(request_id: int) -> int:
    return receipts.receipts_link_send(request_id=request_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=8)
def surplus_refund_task(allocation_id: int) -> int | None:
    try:
        refund = services.surplus_refund(allocation_id=allocation_id)
    except TransportError as error:
        _unless_permanent(error)
        return None
    return refund.pk if refund else None


@shared_task(acks_late=True, reject_on_worker_lost=True)
def payments_reconcile() -> dict[str, int]:
    return reconcile.payments_reconcile().as_dict()


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=8)
def card_detach_task(payment_method_id: str) -> None:
    try:
        services.card_detach(payment_method_id=payment_method_id)
    except TransportError as error:
        _unless_permanent(error)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=8)
def payment_card_forget_task(payment_id: int) -> None:
    """Kept for messages queued before the detach path became one (task names are public): the same path."""
    try:
        services.payment_card_detach(payment_id=payment_id)
    except TransportError as error:
        _unless_permanent(error)


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=_RETRYABLE, retry_backoff=True, max_retries=5)
def autopay_attempt_task(attempt_id: int) -> str:
    return autopay.autopay_attempt_run(attempt_id=attempt_id).status


@shared_task(acks_late=True, reject_on_worker_lost=True)
def autopay_due_task() -> int:
    return autopay.autopay_due()
