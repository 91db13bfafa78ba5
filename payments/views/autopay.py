"""Autopay pages (P6, P7): enroll a card, see it, replace it, or turn autopay off."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.http import client_ip
from payments import autopay, services
from payments.rules import card_label
from payments.views.common import CARD_NOT_SAVED, another_card, json_body
from verification.access import verified_patient_page


@verified_patient_page("GET")
def pay_autopay(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """P6: enroll a card, see it, replace it, or turn autopay off, with the consent text in plain words."""
    practices = autopay.autopay_practices(patient_id=patient_id)
    enrollment = autopay.active_enrollment(patient_id=patient_id)
    context: dict[str, Any] = {
        "practices": practices,
        "enrollment": enrollment,
        "consent": autopay.consent_text(practices=practices),
    }
    if practices:
        try:
            context["setup_id"], context["setup_secret"] = services.card_setup_start(
                patient_id=patient_id, purpose="autopay"
            )
        except TransportError as error:
            messages.error(request, error.message)
            return redirect("pay-summary")
        context.update(stripe_js_url=settings.STRIPE_JS_URL, publishable_key=settings.STRIPE_PUBLISHABLE_KEY)
    return render(request, "payments/autopay.html", context)


@verified_patient_page("POST")
def pay_autopay_enroll(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    body = json_body(request)
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=str(body.get("setup_intent", "")))
        if card is None:
            return JsonResponse(
                {"status": "error", "message": CARD_NOT_SAVED, **another_card(patient_id, "autopay")}, status=400
            )
        autopay.autopay_enroll(
            patient_id=patient_id,
            card=card,
            declared_benefit_card=bool(body.get("benefit_card")),
            pay_open_now=bool(body.get("pay_open_now")),
            ip=client_ip(request),
        )
    except ServiceError as error:
        # The saved card was not enrolled: the page gets a fresh SetupIntent so another card can be tried.
        return JsonResponse(
            {"status": "refused", "message": error.message, "code": error.code, **another_card(patient_id, "autopay")},
            status=409,
        )
    except TransportError as error:
        return JsonResponse({"status": "error", "message": error.message}, status=503)
    messages.success(
        request,
        gettext("Autopay is on with your {card}.").format(card=card_label(card.brand, card.last4)),
    )
    return JsonResponse({"status": "enrolled", "redirect": reverse("pay-summary")})


@verified_patient_page("POST")
def pay_autopay_end(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    if autopay.autopay_end(patient_id=patient_id, actor=Actor.patient(patient_id, ip=client_ip(request))):
        messages.success(request, gettext("Autopay is off. Nothing more will be charged automatically."))
    return redirect("pay-summary")
