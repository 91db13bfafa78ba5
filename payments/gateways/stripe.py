"""Stripe: the only module that imports `stripe`. Every call has a timeout; every create has an idempotency key
derived from our own ids. Results come back as plain dataclasses, errors as TransportError(permanent=...)."""

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import stripe
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from alma_billing.core import budget
from alma_billing.core.errors import TransportError

logger = logging.getLogger(__name__)

# Says nothing about money: whether anything was charged is for the caller to say, from what it knows.
# Lazy: rendered when raised, in the language of the patient's page.
UNAVAILABLE = gettext_lazy("We couldn't reach the card processor. Please try again in a minute.")

# Plain words for the decline codes a patient is likely to see (https://docs.stripe.com/declines/codes).
# Stored in English with the payment (failure_message, for history); shown translated from the code by
# failure_message_for().
DECLINE_MESSAGES = {
    "insufficient_funds": gettext_noop("Your card was declined for insufficient funds. Try another card."),
    "expired_card": gettext_noop("Your card has expired. Try another card."),
    "incorrect_cvc": gettext_noop("The security code (CVC) is incorrect. Check it and try again, or try another card."),
    "incorrect_number": gettext_noop("The card number is incorrect. Check it and try again."),
    "lost_card": gettext_noop("Your bank declined this card. Try another card, or call your bank."),
    "stolen_card": gettext_noop("Your bank declined this card. Try another card, or call your bank."),
    "processing_error": gettext_noop(
        "There was a problem processing your card. Please try again, or try another card."
    ),
    "authentication_required": gettext_noop(
        "Your bank needs you to confirm this payment. Try again and complete the check."
    ),
    "payment_intent_authentication_failure": gettext_noop(
        "The card check with your bank was not completed. Try again, or try another card."
    ),
}
DEFAULT_DECLINE = gettext_noop(
    "Your bank declined the card. Try another card, or call the number on the back of your card."
)
# Our own failure codes whose stored sentence may be in another language than the patient's now.
_OWN_FAILURES = {  # the result page adds "Nothing was charged." to each
    "processor_error": gettext_noop("We couldn't reach the card processor. Please try again in a minute."),
    "not_sent": gettext_noop("The payment was not completed."),
    "unknown_at_stripe": gettext_noop("The card processor has no record of this payment."),
}


def failure_message_for(code: str | None, stored: str = "") -> str:
    """What a patient reads about a failed payment, in the active language: from the failure code where we know
    it, else the stored sentence translated (our own sentences are catalog entries), else a generic decline."""
    if code and code in DECLINE_MESSAGES:
        return gettext(DECLINE_MESSAGES[code])
    if code and code in _OWN_FAILURES:
        return gettext(_OWN_FAILURES[code])
    if stored:
        return gettext(stored)
    return gettext(DEFAULT_DECLINE)


def decline_message(code: str | None) -> str:
    return DECLINE_MESSAGES.get(code or "", DEFAULT_DECLINE)


@dataclass(frozen=True)
class Card:
    payment_method_id: str
    customer_id: str
    brand: str
    last4: str
    funding: str
    iin: str = ""
    issuer: str = ""


class Malformed(ValueError):
    """A Stripe object (e.g. in a signed webhook) does not have the shape Stripe documents."""


class IntentUnknown(TransportError):
    """Stripe answers that it has no such PaymentIntent (or customer): asking again will not change that."""

    def __init__(self) -> None:
        super().__init__(UNAVAILABLE, permanent=True)


@dataclass(frozen=True)
class Intent:
    id: str
    status: str  # Stripe's PaymentIntent status
    amount_cents: int
    currency: str = "usd"
    client_secret: str = ""
    payment_method_id: str = ""
    customer_id: str = ""
    failure_code: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Declined:
    """The card was refused at confirmation; `intent_id` is set when Stripe created the PaymentIntent anyway."""

    code: str
    message: str
    intent_id: str = ""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    object: dict[str, Any]
    raw: dict[str, Any]


def _client(*, retries: bool = True) -> stripe.StripeClient:
    """A client whose timeout and retries fit in what is left of the request's outside-call budget."""
    per_call = settings.STRIPE_TIMEOUT_SECONDS
    try:
        timeout = budget.call_timeout(per_call)
    except budget.BudgetExhausted:
        logger.warning("stripe call skipped: the request's outside-call budget is spent")
        raise TransportError(UNAVAILABLE, permanent=False) from None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=budget.call_retries(per_call, settings.STRIPE_MAX_NETWORK_RETRIES) if retries else 0,
    )


def payment_signature(*, payment_id: int, amount_cents: int) -> str:
    """Our mark on the PaymentIntents we create, so a lost intent can be adopted only if it is really ours:
    another integration on the same Stripe account (or anyone holding only the webhook secret) cannot forge it."""
    message = f"alma-payment-{payment_id}-{amount_cents}-usd".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def _missing(error: stripe.StripeError) -> bool:
    """Stripe's "No such ..." (code resource_missing, HTTP 404)."""
    return isinstance(error, stripe.InvalidRequestError) and (
        getattr(error, "code", "") == "resource_missing" or error.http_status == 404
    )


def _transport(error: stripe.StripeError, action: str) -> TransportError:
    # IdempotencyError: the same key is still being processed (e.g. a dead worker's request); asking again helps.
    retryable = isinstance(error, stripe.APIConnectionError | stripe.RateLimitError | stripe.IdempotencyError) or (
        isinstance(error, stripe.APIError) and (error.http_status or 500) >= 500
    )
    logger.warning(
        "stripe %s failed: %s (%s) %s", action, type(error).__name__, getattr(error, "code", ""), error.user_message
    )
    return TransportError(UNAVAILABLE, permanent=not retryable)


def _text(value: Any, *, limit: int = 255) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise Malformed("expected a short string")
    return value


def _intent(source: Any) -> Intent:
    """A PaymentIntent as our dataclass; Malformed when it lacks what Stripe always sends."""
    obj = source.to_dict() if hasattr(source, "to_dict") else source
    if not isinstance(obj, dict):
        raise Malformed("a payment intent is an object")
    amount = obj.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise Malformed("a payment intent has an integer amount")
    intent_id, status = _text(obj.get("id")), _text(obj.get("status"))
    if not intent_id.startswith("pi_") or not status:
        raise Malformed("a payment intent has an id and a status")
    error = obj.get("last_payment_error")
    error = {} if error is None else error
    metadata = obj.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(error, dict) or not isinstance(metadata, dict):
        raise Malformed("last_payment_error and metadata are objects")
    return Intent(
        id=intent_id,
        status=status,
        amount_cents=amount,
        currency=_text(obj.get("currency")).lower(),
        client_secret=_text(obj.get("client_secret"), limit=500),
        payment_method_id=_id(obj.get("payment_method")),
        customer_id=_id(obj.get("customer")),
        failure_code=_text(error.get("decline_code") or error.get("code"), limit=100),
        metadata={str(key)[:40]: _text(value, limit=500) for key, value in metadata.items() if isinstance(value, str)},
    )


def _id(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, dict):
        return _text(value.get("id"))
    return _text(value)


def customer_create(*, patient_id: int, email: str) -> str:
    try:
        params: dict[str, Any] = {"metadata": {"patient_id": str(patient_id)}}
        if email:
            params["email"] = email
        customer = _client().v1.customers.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"alma-customer-{patient_id}"},
        )
    except stripe.StripeError as error:
        raise _transport(error, "customer create") from error
    return customer.id


def setup_intent_create(*, customer_id: str, purpose: str, key: str) -> tuple[str, str]:
    """A SetupIntent to collect a card with Stripe.js; returns (id, client_secret)."""
    try:
        intent = _client().v1.setup_intents.create(
            params={  # type: ignore[arg-type]
                "customer": customer_id,
                "payment_method_types": ["card"],
                "usage": "off_session",
                "metadata": {"purpose": purpose},
            },
            options={"idempotency_key": f"alma-setup-{key}"},
        )
    except stripe.StripeError as error:
        raise _transport(error, "setup intent create") from error
    return intent.id, intent.client_secret or ""


def card_from_setup_intent(*, setup_intent_id: str, customer_id: str) -> Card | None:
    """The card a succeeded SetupIntent saved, attached to the customer. None if it is not this customer's."""
    if not setup_intent_id.startswith("seti_") or not setup_intent_id.replace("_", "").isalnum():
        return None
    try:  # a client per call: each call's timeout is cut to what is left of the request's budget
        intent = _client().v1.setup_intents.retrieve(setup_intent_id)
        if intent.status != "succeeded" or not intent.payment_method:
            return None
        if intent.customer and _id(intent.customer) != customer_id:
            return None
        method = _client().v1.payment_methods.retrieve(_id(intent.payment_method))
        if method.customer and _id(method.customer) != customer_id:
            return None
        if not method.customer:  # real Stripe attaches on confirm; localstripe does not
            method = _client().v1.payment_methods.attach(method.id, params={"customer": customer_id})
    except stripe.InvalidRequestError:
        return None
    except stripe.StripeError as error:
        raise _transport(error, "setup intent read") from error
    card = method.card
    if card is None:
        return None
    return Card(
        payment_method_id=method.id,
        customer_id=customer_id,
        brand=card.brand or "",
        last4=card.last4 or "",
        funding=card.funding or "",
        iin=str(getattr(card, "iin", "") or ""),  # Stripe provides these for some cards only
        issuer=str(getattr(card, "issuer", "") or ""),
    )


def payment_intent_create(
    *,
    amount_cents: int,
    customer_id: str,
    payment_method_id: str,
    payment_id: int,
    reference: str,
    off_session: bool = False,
) -> Intent | Declined:
    """Create and confirm a card PaymentIntent for one of our payments (idempotency key: the payment's id)."""
    params: dict[str, Any] = {
        "amount": amount_cents,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": {
            "payment_id": str(payment_id),
            "reference": reference,
            "alma_sig": payment_signature(payment_id=payment_id, amount_cents=amount_cents),
        },
    }
    if off_session:
        params["off_session"] = True
    try:
        # Not retried here: an unanswered charge is found and adopted by reconciliation (payment_intent_find), which
        # holds even where the idempotency key would not (localstripe ignores them).
        intent = _client(retries=False).v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"alma-payment-{payment_id}"},
        )
    except stripe.CardError as error:
        err = error.error
        code = (err.decline_code or err.code or "card_declined") if err else "card_declined"
        intent_id = _id(err.payment_intent) if err and err.payment_intent else ""
        return Declined(code=code, message=decline_message(code), intent_id=intent_id)
    except stripe.StripeError as error:
        raise _transport(error, "payment intent create") from error
    return _intent(intent)


def payment_intent_find(*, customer_id: str, payment_id: int) -> Intent | None:
    """The intent an earlier, interrupted call created for this payment of ours, if Stripe has one."""
    try:
        try:
            page = _client().v1.payment_intents.list(params={"customer": customer_id, "limit": 100})
        except stripe.InvalidRequestError:  # localstripe cannot filter by customer
            page = _client().v1.payment_intents.list(params={"limit": 100})
    except stripe.StripeError as error:
        raise _transport(error, "payment intent list") from error
    for intent in page.data:
        try:
            found = _intent(intent)
        except Malformed:
            continue
        if found.metadata.get("payment_id") == str(payment_id) and found.customer_id == customer_id:
            return found
    return None


def payment_intent_retrieve(intent_id: str) -> Intent:
    """The intent as Stripe has it now; IntentUnknown when Stripe has no such intent."""
    try:
        return _intent(_client().v1.payment_intents.retrieve(intent_id))
    except stripe.StripeError as error:
        if _missing(error):
            raise IntentUnknown from error
        raise _transport(error, "payment intent read") from error
    except Malformed as error:
        raise TransportError(UNAVAILABLE, permanent=False) from error


def payment_intent_cancel(intent_id: str) -> Intent:
    """Cancel an intent that has not succeeded; if it already succeeded, return it as it is."""
    client = _client()
    try:
        return _intent(client.v1.payment_intents.cancel(intent_id))
    except stripe.InvalidRequestError as error:
        if _missing(error):
            raise IntentUnknown from error
        return payment_intent_retrieve(intent_id)  # e.g. it succeeded meanwhile: report the truth
    except stripe.StripeError as error:
        raise _transport(error, "payment intent cancel") from error


def customer_exists(customer_id: str) -> bool:
    """Whether Stripe knows this customer: tells a forgotten intent from a wrong API key or another account."""
    if not customer_id:
        return False
    try:
        customer = _client().v1.customers.retrieve(customer_id)
    except stripe.StripeError as error:
        if _missing(error):
            return False
        raise _transport(error, "customer read") from error
    return not getattr(customer, "deleted", False)


def refund_create(*, payment_intent_id: str, amount_cents: int, refund_key: str, metadata: dict[str, str]) -> str:
    try:
        refund = _client().v1.refunds.create(
            params={"payment_intent": payment_intent_id, "amount": amount_cents, "metadata": metadata},
            options={"idempotency_key": f"alma-refund-{refund_key}"},
        )
    except stripe.StripeError as error:
        raise _transport(error, "refund create") from error
    return refund.id


def payment_method_detach(payment_method_id: str) -> None:
    try:
        _client().v1.payment_methods.detach(payment_method_id)
    except stripe.InvalidRequestError:
        pass  # already detached
    except stripe.StripeError as error:
        raise _transport(error, "payment method detach") from error


class BadSignature(Exception):
    pass


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: PostgreSQL's jsonb refuses them


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number too large for JSON")  # 1e400
    return value


def _signed_in_the_future(signature: str) -> bool:
    """Stripe's library refuses old timestamps only; one far ahead of our clock is no more believable."""
    for part in signature.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t" and value.strip().isdigit():
            return int(value) > time.time() + stripe.Webhook.DEFAULT_TOLERANCE
    return False


def event_from_webhook(*, payload: bytes, signature: str) -> Event:
    """Verify the Stripe-Signature header before anything else (BadSignature), then check the event's shape
    (Malformed): a signed body that is not a Stripe event changes nothing."""
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except (ValueError, stripe.SignatureVerificationError) as error:  # UnicodeDecodeError is a ValueError
        raise BadSignature(str(error)) from error
    if _signed_in_the_future(signature):
        raise BadSignature("the signature's timestamp is in the future")
    if b"\\u0000" in payload:
        raise Malformed("NUL characters are not stored")
    try:
        raw = json.loads(payload, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        raise Malformed("the body is not JSON PostgreSQL can store") from error
    if not isinstance(raw, dict):
        raise Malformed("an event is a JSON object")
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate ("\ud800"): not text PostgreSQL can store
        raise Malformed("the event holds text that is not UTF-8") from error
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise Malformed("an event has data.object")
    event_id, event_type = _text(raw.get("id")), _text(raw.get("type"), limit=100)
    if not event_id.startswith("evt_") or not event_type:
        raise Malformed("an event has an id and a type")
    return Event(id=event_id, type=event_type, object=data["object"], raw=raw)


def intent_from_event_object(obj: dict[str, Any]) -> Intent:
    return _intent(obj)
