"""Stripe webhook ingestion: the signature is checked by the caller; here the event is stored once and applied."""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from payments import services
from payments.gateways import stripe as gateway
from payments.models import StripeEvent

logger = logging.getLogger(__name__)

PAYMENT_INTENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "payment_intent.processing",
}


def stripe_event_ingest(*, event: gateway.Event) -> bool:
    """Store and apply one verified event, atomically. Returns False for a duplicate delivery (a no-op).

    If applying fails, nothing is stored and Stripe delivers the event again later.
    """
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(event_id=event.id, type=event.type, payload=event.raw)
            _apply(event)
            stored.processed_at = timezone.now()
            stored.save(update_fields=["processed_at"])
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event.id).exists():
            return False
        raise
    return True


def _apply(event: gateway.Event) -> None:
    obj = event.object
    if event.type in PAYMENT_INTENT_EVENTS:
        services.payment_apply_intent(intent=gateway.intent_from_event_object(obj))
    elif event.type == "charge.refunded" and obj.get("payment_intent"):
        services.payment_record_refunded_total(
            payment_intent_id=str(obj["payment_intent"]), refunded_cents=int(obj.get("amount_refunded") or 0)
        )
    elif event.type.startswith("charge.dispute.") and obj.get("payment_intent"):
        services.payment_record_dispute(payment_intent_id=str(obj["payment_intent"]), status=str(obj.get("status")))
    else:
        logger.info("stripe event %s (%s) stored, nothing to do", event.id, event.type)
