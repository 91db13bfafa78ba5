"""Stripe webhook ingestion: the signature is checked by the caller; here the event is stored once and applied."""

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from payments import services
from payments.gateways import stripe as gateway
from payments.models import StripeEvent

logger = logging.getLogger(__name__)

# The Stripe event types this endpoint acts on (README "Stripe webhooks" lists them for the dashboard set-up); every
# other signed event is stored and ignored. Use these names, never the strings, anywhere else.
PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_INTENT_PAYMENT_FAILED = "payment_intent.payment_failed"
PAYMENT_INTENT_CANCELED = "payment_intent.canceled"
PAYMENT_INTENT_REQUIRES_ACTION = "payment_intent.requires_action"
PAYMENT_INTENT_PROCESSING = "payment_intent.processing"
CHARGE_REFUNDED = "charge.refunded"
# charge.dispute.created, .updated, .closed (and any other dispute event): the dispute's status is what counts.
CHARGE_DISPUTE_PREFIX = "charge.dispute."

PAYMENT_INTENT_EVENTS = frozenset(
    {
        PAYMENT_INTENT_SUCCEEDED,
        PAYMENT_INTENT_PAYMENT_FAILED,
        PAYMENT_INTENT_CANCELED,
        PAYMENT_INTENT_REQUIRES_ACTION,
        PAYMENT_INTENT_PROCESSING,
    }
)


class EventFailed(Exception):
    """Applying a verified event failed; the failure is recorded on its StripeEvent and Stripe delivers it again."""


def stripe_event_ingest(*, event: gateway.Event) -> bool:
    """Store and apply one verified event, atomically. Returns False for a duplicate delivery (a no-op).

    An event about an intent, charge or dispute that is not ours is stored as "not ours" and changes nothing. A signed
    event whose object has the wrong shape raises gateway.Malformed, and nothing is stored. If applying fails for any
    other reason, nothing it did is kept, the event is stored as failed with the error (shown to ops), EventFailed is
    raised so Stripe gets a 500 and delivers it again, and that redelivery applies it.
    """
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(event_id=event.id, type=event.type, payload=event.raw)
            _apply_stored(stored, event)
    except IntegrityError:
        if not StripeEvent.objects.filter(event_id=event.id).exists():
            raise
        return _retry_failed(event)
    except gateway.Malformed:
        raise
    except Exception as error:
        _record_failure(event, error, first=True)
        raise EventFailed(event.id) from error
    return True


def _apply_stored(stored: StripeEvent, event: gateway.Event) -> None:
    stored.outcome = _apply(event)
    stored.processed_at = timezone.now()
    stored.error = ""
    stored.save(update_fields=["outcome", "processed_at", "error", "attempts"])


def _retry_failed(event: gateway.Event) -> bool:
    """A redelivery: a no-op unless the stored event failed last time, in which case it is applied now."""
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.select_for_update().get(event_id=event.id)
            if stored.outcome != StripeEvent.Outcome.FAILED:
                return False
            stored.attempts += 1
            _apply_stored(stored, event)
    except gateway.Malformed:
        raise
    except Exception as error:
        _record_failure(event, error, first=False)
        raise EventFailed(event.id) from error
    logger.info("stripe event %s applied on delivery after a failure", event.id)
    return True


def _record_failure(event: gateway.Event, error: Exception, *, first: bool) -> None:
    """Keep the event and why it failed (the exception's class and message, cut short: no payload, no patient data)."""
    logger.exception("stripe event %s (%s) failed to apply; Stripe will deliver it again", event.id, event.type)
    reason = f"{type(error).__name__}: {error}"[:500]
    try:
        if first:
            StripeEvent.objects.get_or_create(
                event_id=event.id,
                defaults={
                    "type": event.type,
                    "payload": event.raw,
                    "outcome": StripeEvent.Outcome.FAILED,
                    "error": reason,
                },
            )
        else:
            StripeEvent.objects.filter(event_id=event.id, outcome=StripeEvent.Outcome.FAILED).update(
                error=reason, attempts=F("attempts") + 1
            )
    except DatabaseError:
        logger.exception("stripe event %s: the failure itself could not be recorded", event.id)


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
    if event.type == CHARGE_REFUNDED and obj.get("payment_intent"):
        refunded = obj.get("amount_refunded") or 0
        if not isinstance(refunded, int) or isinstance(refunded, bool) or refunded < 0:
            raise gateway.Malformed("amount_refunded is a whole number of cents")
        ours = services.payment_record_refunded_total(payment_intent_id=_intent_id(obj), refunded_cents=refunded)
        return Outcome.APPLIED if ours else Outcome.NOT_OURS
    if event.type.startswith(CHARGE_DISPUTE_PREFIX) and obj.get("payment_intent"):
        status = obj.get("status")
        ours = services.payment_record_dispute(payment_intent_id=_intent_id(obj), status=str(status or "")[:40])
        return Outcome.APPLIED if ours else Outcome.NOT_OURS
    logger.info("stripe event %s (%s) stored, nothing to do", event.id, event.type)
    return Outcome.IGNORED
