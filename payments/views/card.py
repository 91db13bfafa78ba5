"""The card page and its Pay click: Stripe.js saves the card, the server holds the invoices and charges them; the
attempt page when the answer was lost, "Try another card", and the 3-D Secure refresh."""

import time
import uuid

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext

from alma_billing.core import budget
from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.http import client_ip
from alma_billing.core.money import format_cents
from payments import selectors, services
from payments.gateways import stripe as gateway
from payments.models import Payment
from payments.views.checkouts import (
    UNKNOWN_SETTLES_AFTER,
    checkout_for_attempt,
    checkout_open,
    checkout_token,
    checkouts,
    signed_checkout,
    still_payable,
)
from payments.views.common import CARD_NOT_SAVED, another_card, dead_end, json_body, stale
from payments.views.rows import invoice_row
from verification.access import verified_patient_page


@verified_patient_page("GET")
def pay_card(request: HttpRequest, checkout_id: str, *, patient_id: int) -> HttpResponse:
    checkout = checkouts(request).get(checkout_id)
    if checkout is None:
        messages.info(request, gettext("That payment page has expired. Here is what you owe now."))
        return redirect("pay-summary")
    earlier = Payment.objects.filter(attempt_key=checkout["attempt_key"], patient_id=patient_id).first()
    if earlier is not None and earlier.status not in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return redirect("pay-result", payment_id=earlier.pk)  # this Pay click already went through
    invoices = still_payable(patient_id, checkout)
    if invoices is None:
        messages.info(request, services.STALE)
        return redirect("pay-summary")
    if earlier is not None:
        checkout["attempt_key"] = uuid.uuid4().hex  # the last try failed: a new card is a new attempt
    request.session.modified = True
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose="payment")
    except TransportError as error:
        messages.error(request, error.message + " " + gettext("Nothing was charged."))
        return redirect("pay-summary")
    context = {
        "checkout_token": checkout_token(patient_id=patient_id, checkout=checkout),
        "rows": [invoice_row(i) for i in invoices],
        "amount": format_cents(checkout["amount_cents"]),
        "stripe_js_url": settings.STRIPE_JS_URL,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "setup_secret": setup_secret,
        "setup_id": setup_id,
        "attempt_key": checkout["attempt_key"],
        "attempt_url": reverse("pay-attempt", kwargs={"attempt_key": checkout["attempt_key"]}),
    }
    return render(request, "payments/card.html", context)


@verified_patient_page("GET")
def pay_attempt(request: HttpRequest, attempt_key: str, *, patient_id: int) -> HttpResponse:
    """Where the card page goes when it lost the answer to a Pay click: the truth, as far as the server knows it."""
    payment = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
    if payment is not None:
        return redirect("pay-result", payment_id=payment.pk)
    found = checkout_for_attempt(request, attempt_key)
    if found is None:
        # No payment (yet) and no page to time it against: say what we know, and how to find out without paying twice.
        return dead_end(
            request,
            gettext("We can't tell yet whether this payment went through"),
            gettext(
                "Please don't pay again for a few minutes. Open your invoices: a payment that went through shows as "
                "paid or processing there, and we email you a receipt."
            ),
            status=404,
        )
    checkout_id, checkout = found
    # The Pay request may still be running: until it cannot be, "nothing was charged" might be false.
    first_seen = checkout.setdefault("unknown_since", time.time())
    request.session.modified = True
    if time.time() - first_seen < UNKNOWN_SETTLES_AFTER:
        return render(request, "payments/confirming.html", {"retry_seconds": 10}, status=202)
    checkout["attempt_key"] = uuid.uuid4().hex
    checkout.pop("unknown_since", None)
    messages.error(
        request, gettext("Your payment was not sent to the card processor. Nothing was charged. Please try again.")
    )
    return redirect("pay-card", checkout_id=checkout_id)


@verified_patient_page("GET")
def pay_retry(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    """ "Try another card" after a failed payment: a new checkout for the same invoices, if they are still open."""
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return dead_end(
            request, gettext("Payment not found"), gettext("We couldn't find that payment on your account."), status=404
        )
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    wanted = [a.invoice_id for a in payment.allocations.all()]
    invoices = [payable[pk] for pk in wanted if pk in payable]
    if payment.status not in (Payment.Status.FAILED, Payment.Status.CANCELED) or len(invoices) != len(wanted):
        messages.info(request, gettext("Those invoices were paid or are being paid. Here is what you owe now."))
        return redirect("pay-summary")
    return redirect("pay-card", checkout_id=checkout_open(request, invoices))


def _payment_json(payment: Payment) -> JsonResponse:
    result_url = reverse("pay-result", kwargs={"payment_id": payment.pk})
    if payment.status == Payment.Status.SUCCEEDED:
        return JsonResponse({"status": "succeeded", "redirect": result_url})
    if payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return JsonResponse(
            {
                "status": "failed",
                "message": gateway.failure_message_for(payment.failure_code, payment.failure_message),
                "redirect": result_url,
            }
        )
    try:
        secret = services.payment_action_secret(payment=payment)
    except TransportError:
        secret = None  # the result page asks Stripe again
    if secret:
        refresh = reverse("pay-refresh", kwargs={"payment_id": payment.pk})
        return JsonResponse(
            {"status": "requires_action", "client_secret": secret, "refresh": refresh, "redirect": result_url}
        )
    return JsonResponse({"status": "processing", "redirect": result_url})


def _forget_setup_card(patient_id: int, setup_intent_id: str) -> None:
    """A card Stripe.js saved for a payment that will not happen is not kept (best effort; reconciliation-free)."""
    if not setup_intent_id:
        return
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=setup_intent_id)
    except TransportError:
        return
    if card is not None:
        services.card_detach_later(payment_method_id=card.payment_method_id)


@verified_patient_page("POST")
def pay_card_confirm(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """Called by the card page once Stripe.js saved the card: hold the invoices, then charge them."""
    body = json_body(request)
    attempt_key = body.get("attempt_key")
    attempt_key = attempt_key if isinstance(attempt_key, str) and 0 < len(attempt_key) <= 64 else "-"
    earlier = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
    if earlier is not None:
        return _payment_json(earlier)  # a second click on the same Pay: same payment, no second charge
    setup_intent = body.get("setup_intent")
    setup_intent = setup_intent if isinstance(setup_intent, str) else ""
    checkout = signed_checkout(body.get("checkout"), patient_id=patient_id, attempt_key=attempt_key)
    if checkout is None:
        found = checkout_for_attempt(request, attempt_key)
        checkout = found[1] if found else None
    if checkout is None:
        _forget_setup_card(patient_id, setup_intent)
        return stale(request, "expired")
    invoices = still_payable(patient_id, checkout)
    if invoices is None:
        _forget_setup_card(patient_id, setup_intent)
        return stale(request, "stale")
    left = budget.remaining()
    if left is not None and left < settings.STRIPE_TIMEOUT_SECONDS:
        # Too little time left to charge and hear back: hold nothing and say so (true: nothing was sent).
        return JsonResponse(
            {"status": "error", "message": str(gateway.UNAVAILABLE) + " " + gettext("Nothing was charged.")},
            status=503,
        )
    card: gateway.Card | None = None
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=setup_intent)
        if card is None:
            return JsonResponse(
                {"status": "error", "message": CARD_NOT_SAVED, **another_card(patient_id, "payment")}, status=400
            )
        payment = services.payment_start(
            patient_id=patient_id,
            invoice_ids=[i.pk for i in invoices],
            expected_amount_cents=checkout["amount_cents"],
            attempt_key=attempt_key,
            card=card,
            actor=Actor.patient(patient_id, ip=client_ip(request)),
        )
    except ServiceError as error:
        if card is not None:
            services.card_detach_later(payment_method_id=card.payment_method_id)  # no payment will use it
        return stale(request, error.code)
    except TransportError as error:
        # Nothing was held, so nothing was sent to be charged: that sentence is true here.
        return JsonResponse(
            {
                "status": "error",
                "message": error.message + " " + gettext("Nothing was charged."),
                **another_card(patient_id, "payment"),
            },
            status=503,
        )
    try:
        payment = services.payment_charge(payment_id=payment.pk)
    except TransportError:
        # The card processor did not answer: the payment stays held and is settled or released by
        # reconciliation. Never "nothing was charged" here: the call may have gone through.
        return JsonResponse({"status": "processing", "redirect": reverse("pay-result", args=[payment.pk])})
    return _payment_json(payment)


@verified_patient_page("POST")
def pay_refresh(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return JsonResponse({"status": "error", "message": gettext("Payment not found.")}, status=404)
    try:
        payment = services.payment_refresh(payment_id=payment.pk)
    except TransportError:
        # After the card check the charge may well have gone through: never say "nothing was charged" here.
        # The result page shows "We're confirming your payment" and asks Stripe again.
        return JsonResponse({"status": "processing", "redirect": reverse("pay-result", args=[payment.pk])})
    return _payment_json(payment)
