"""Stripe webhook ingestion: the signature is checked by the caller; here the event is stored once and applied."""

import logging
from typing import Any

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

    If applying fails, nothing is stored and Stripe delivers the event again later. An event about an intent,
    charge or dispute that is not ours is stored as "not ours" and changes nothing. A signed event whose object
    has the wrong shape raises gateway.Malformed, and nothing is stored.
    """
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(event_id=event.id, type=event.type, payload=event.raw)
            stored.outcome = _apply(event)
            stored.processed_at = timezone.now()
            stored.save(update_fields=["outcome", "processed_at"])
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event.id).exists():
            return False
        raise
    return True


def _intent_id(obj: dict[str, Any]) -> str:
    value = obj.get("payment_intent")
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value.startswith("pi_") or len(value) > 64:
        raise gateway.Malformed("payment_intent is an intent id")
    return value


def _apply(event: gateway.Event) -> str:
    obj = event.object
    Outcome = StripeEvent.Outcome
    if event.type in PAYMENT_INTENT_EVENTS:
        payment = services.payment_apply_intent(intent=gateway.intent_from_event_object(obj))
        return Outcome.APPLIED if payment is not None else Outcome.NOT_OURS
    if event.type == "charge.refunded" and obj.get("payment_intent"):
        refunded = obj.get("amount_refunded") or 0
        if not isinstance(refunded, int) or isinstance(refunded, bool) or refunded < 0:
            raise gateway.Malformed("amount_refunded is a whole number of cents")
        ours = services.payment_record_refunded_total(payment_intent_id=_intent_id(obj), refunded_cents=refunded)
        return Outcome.APPLIED if ours else Outcome.NOT_OURS
    if event.type.startswith("charge.dispute.") and obj.get("payment_intent"):
        status = obj.get("status")
        ours = services.payment_record_dispute(payment_intent_id=_intent_id(obj), status=str(status or "")[:40])
        return Outcome.APPLIED if ours else Outcome.NOT_OURS
    logger.info("stripe event %s (%s) stored, nothing to do", event.id, event.type)
    return Outcome.IGNORED
