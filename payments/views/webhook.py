"""Stripe's webhook endpoint: signature first, then the event is stored and processed (payments.webhooks)."""

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alma_billing.core.http import client_ip
from payments.gateways import stripe as gateway
from payments.webhooks import EventFailed, stripe_event_ingest

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's webhook: nothing is stored unless the signature checks out."""
    try:
        event = gateway.event_from_webhook(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except gateway.BadSignature:
        logger.warning("stripe webhook with a bad signature from %s", client_ip(request))
        return HttpResponse("bad signature", status=400, content_type="text/plain")
    except gateway.Malformed as error:
        logger.warning("signed stripe webhook that is not a Stripe event (%s); nothing stored", error)
        return HttpResponse("not a stripe event", status=400, content_type="text/plain")
    try:
        fresh = stripe_event_ingest(event=event)
    except gateway.Malformed as error:
        logger.warning("stripe event %s has an object of the wrong shape (%s); nothing stored", event.id, error)
        return HttpResponse("unexpected event shape", status=400, content_type="text/plain")
    except EventFailed:
        return HttpResponse("failed; recorded, deliver again", status=500, content_type="text/plain")
    return HttpResponse("ok" if fresh else "duplicate", content_type="text/plain")
