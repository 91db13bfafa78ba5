"""The email service's signed tracking webhook (Mailgun, through django-anymail): bounces and spam complaints.

Order, as for Stripe's webhook: refuse what is too big or not shaped like an event (400), verify the HMAC signature
(403), refuse a stale timestamp (400) and an event id seen before (406: Mailgun stops retrying), then record the
event and act on it in one transaction through anymail's `tracking` signal, whose receiver is invoices' (it owns
the patients' addresses: invoices/deliverability.py). Nothing is stored before the
signature is checked, and no address is stored at all.
"""

import json
import logging
import time
from typing import Any

from anymail.exceptions import AnymailError
from anymail.signals import tracking
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

# Mailgun's events are a few kilobytes; anything far larger is not one of theirs.
MAX_BODY_BYTES = 256 * 1024
PROVIDER = "mailgun"


def _refuse(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _text(value: Any, *, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isascii()


class SignedTrackingWebhook(MailgunTrackingWebhookView):
    """Mailgun's JSON tracking webhook with the checks anymail leaves to us: size, shape, freshness, replays."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refuse(400, "Bad Content-Length.")
        if length > MAX_BODY_BYTES:
            return _refuse(400, "Body too large for a tracking event.")
        if request.content_type != "application/json":
            return _refuse(400, "Expected a JSON tracking event (Content-Type: application/json).")
        body = request.body
        if len(body) > MAX_BODY_BYTES:  # a missing or lying Content-Length
            return _refuse(400, "Body too large for a tracking event.")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _refuse(400, "The body is not JSON.")
        signature = payload.get("signature") if isinstance(payload, dict) else None
        event_data = payload.get("event-data") if isinstance(payload, dict) else None
        if not isinstance(signature, dict) or not isinstance(event_data, dict):
            return _refuse(400, "Not a tracking event: expected 'signature' and 'event-data' objects.")
        token, timestamp = signature.get("token"), signature.get("timestamp")
        if not (
            _text(token, limit=128)
            and isinstance(timestamp, str)
            and _text(timestamp, limit=12)
            and timestamp.isdigit()
            and _text(signature.get("signature"), limit=128)
        ):
            return _refuse(400, "Not a tracking event: the signature block is malformed.")
        try:
            self.run_validators(request)  # anymail: HMAC-SHA256 of timestamp + token with the signing key
        except AnymailError:
            logger.warning("email tracking webhook: bad signature; nothing stored")
            return _refuse(403, "Signature does not match.")
        max_age = settings.EMAIL_WEBHOOK_MAX_AGE_SECONDS
        age = time.time() - int(timestamp)
        if age > max_age or age < -300:
            logger.warning("email tracking webhook: stale timestamp (%ds); nothing stored", int(age))
            return _refuse(400, "Stale or future timestamp; refused as a possible replay.")
        if not isinstance(event_data.get("event"), str):
            return _refuse(400, "Not a tracking event: 'event-data.event' is missing.")
        try:
            event = self.esp_to_anymail_event(payload)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError):
            return _refuse(400, "Not a tracking event: its fields have the wrong types.")
        try:
            with transaction.atomic():
                tracking.send(sender=self.__class__, event=event, esp_name=self.esp_name)
        except IntegrityError:
            return _refuse(406, "Already received.")
        except EventAlreadyReceived:
            return _refuse(406, "Already received.")
        return HttpResponse("OK\n", content_type="text/plain")


class EventAlreadyReceived(Exception):
    """Raised by a `tracking` receiver (invoices/deliverability.py) for an event seen before: answered 406."""


_view = SignedTrackingWebhook.as_view()


@csrf_exempt
def mailgun_tracking_webhook(request: HttpRequest) -> HttpResponse:
    """404 until MAILGUN_WEBHOOK_SIGNING_KEY is set: without a key nothing can be verified, so nothing is taken."""
    if not settings.ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        return _refuse(404, "Email tracking is not configured here.")
    if request.method != "POST":
        return _refuse(405, "POST a tracking event.")
    return _view(request)
