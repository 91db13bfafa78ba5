"""What the verified pay pages share: the patient's "not found", an invoice row, JSON bodies, and the answers a Pay
click gets when its page lost a race or expired."""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy

from alma_billing.core.errors import TransportError
from alma_billing.core.http import contains_nul
from payments import services

CARD_NOT_SAVED = gettext_lazy("We couldn't read that card. Please enter it again.")
EXPIRED = gettext_lazy("This payment page has expired. Nothing was charged. Here is what you owe now.")

# Why a Pay click was turned back, said on the summary it redirects to. Passed as a code in that URL rather than
# queued as a session message, which would show up on whatever page this session renders next (another tab's
# "Payment received", say).
NOTICES = {"stale": services.STALE, "expired": EXPIRED, "changed": services.CHANGED}


def dead_end(request: HttpRequest, heading: str, message: str, *, status: int = 404) -> HttpResponse:
    """A verified patient's "not found": what happened, a way back to their invoices (and the footer's support)."""
    context = {"heading": heading, "message": message, "back_url": reverse("pay-summary")}
    return render(request, "verification/link_problem.html", context, status=status)


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:  # {} for anything but a JSON object: not JSON, nested too deep, or text PostgreSQL cannot store (NUL)
        body = json.loads(request.body or b"{}")
        return body if isinstance(body, dict) and not contains_nul(body) else {}
    except (ValueError, RecursionError):
        return {}


def another_card(patient_id: int, purpose: str) -> dict[str, str]:
    """A fresh SetupIntent for an error answer, so the page can take a card again without reloading."""
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose=purpose)
    except TransportError:
        return {}
    return {"setup_id": setup_id, "setup_secret": setup_secret}


def stale(request: HttpRequest, code: str) -> JsonResponse:
    """This tab lost a race (another tab or device paid first), or its page expired: the summary says why and
    shows what is owed."""
    code = code if code in NOTICES else "stale"
    redirect_to = reverse("pay-summary") + f"?notice={code}"
    return JsonResponse({"status": "failed", "message": str(NOTICES[code]), "redirect": redirect_to}, status=409)
