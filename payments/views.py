"""Verified patient pages: the summary (P10/P11), Details (P12), card entry, the result and the receipt (P8).

Amounts always come from the database: the page only says which invoices; the server decides what they cost.
"""

import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.http import client_ip, contains_nul, message_page
from alma_billing.core.money import format_cents
from invoices import selectors as invoice_selectors
from invoices.explain import explanation_lines
from invoices.models import Invoice
from payments import autopay, receipts, selectors, services, tasks
from payments.gateways import stripe as gateway
from payments.models import Payment
from payments.webhooks import stripe_event_ingest
from verification.access import verified_patient_page

logger = logging.getLogger(__name__)

CHECKOUT_KEY = "checkout"
CARD_NOT_SAVED = "We couldn't read that card. Please enter it again."


def _row(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice": invoice,
        "amount": format_cents(invoice.amount_cents),
        "explanation": explanation_lines(invoice.calculation),
    }


@verified_patient_page("GET")
def pay_summary(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    options = selectors.pay_options_for(patient_id=patient_id)
    recent = selectors.recent_payments_for(patient_id=patient_id)
    most_recent = options.most_recent
    practices = autopay.autopay_practices(patient_id=patient_id)
    # Most patients' practices do not offer autopay: then there is no enrollment or charge to look up.
    enrollment = autopay.active_enrollment(patient_id=patient_id) if practices else None
    context = {
        "autopay_practices": practices,
        "autopay_required": [p for p in practices if p.autopay_policy == "required"] if enrollment is None else [],
        "enrollment": enrollment,
        "autopay_charges": selectors.autopay_charges_for(patient_id=patient_id) if practices else [],
        "options": options,
        "rows": [_row(i) for i in reversed(options.payable)],
        "processing": [_row(i) for i in options.processing],
        "total": format_cents(options.total_cents),
        "most_recent": _row(most_recent) if most_recent else None,
        "recent_payments": recent,
    }
    return render(request, "payments/summary.html", context)


@verified_patient_page("GET")
def pay_details(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """P12: every open invoice, oldest first, each payable on its own."""
    options = selectors.pay_options_for(patient_id=patient_id)
    return render(
        request,
        "payments/details.html",
        {
            "rows": [_row(i) for i in options.payable],
            "processing": [_row(i) for i in options.processing],
        },
    )


@verified_patient_page("GET")
def pay_invoice_detail(request: HttpRequest, number: str, *, patient_id: int) -> HttpResponse:
    invoice = invoice_selectors.invoice_for_patient(patient_id=patient_id, number=number)
    if invoice is None:
        return message_page(request, "Invoice not found", "We couldn't find that invoice on your account.", status=404)
    return render(request, "verification/invoice.html", _row(invoice))


def _chosen_invoices(patient_id: int, choice: str) -> list[Invoice]:
    options = selectors.pay_options_for(patient_id=patient_id)
    if choice == "all":
        return options.payable
    if choice == "recent":
        return [options.most_recent] if options.most_recent else []
    if choice.startswith("invoice:"):
        number = choice.removeprefix("invoice:")
        return [i for i in options.payable if i.number == number]
    return []


@verified_patient_page("POST")
def pay_checkout(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    invoices = _chosen_invoices(patient_id, request.POST.get("choice", ""))
    if not invoices:
        messages.error(request, "That invoice is no longer open. Here is what you owe now.")
        return redirect("pay-summary")
    request.session[CHECKOUT_KEY] = {
        "invoice_ids": [i.pk for i in invoices],
        "amount_cents": sum(i.amount_cents for i in invoices),
        "attempt_key": uuid.uuid4().hex,
    }
    return redirect("pay-card")


def _checkout(request: HttpRequest, patient_id: int) -> tuple[dict[str, Any], list[Invoice]] | None:
    """The invoices being paid, re-read from the database; None when any of them stopped being payable."""
    checkout = request.session.get(CHECKOUT_KEY)
    if not checkout:
        return None
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    invoices = [payable[pk] for pk in checkout["invoice_ids"] if pk in payable]
    if len(invoices) != len(checkout["invoice_ids"]):
        return None
    checkout["amount_cents"] = sum(i.amount_cents for i in invoices)
    return checkout, invoices


@verified_patient_page("GET")
def pay_card(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    checkout = request.session.get(CHECKOUT_KEY) or {}
    earlier = Payment.objects.filter(attempt_key=checkout.get("attempt_key", "-"), patient_id=patient_id).first()
    if earlier is not None and earlier.status not in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return redirect("pay-result", payment_id=earlier.pk)  # this Pay click already went through
    current = _checkout(request, patient_id)
    if current is None:
        messages.info(request, "Those invoices were paid or are being paid. Here is what you owe now.")
        return redirect("pay-summary")
    checkout, invoices = current
    if earlier is not None:
        checkout["attempt_key"] = uuid.uuid4().hex  # the last try failed: a new card is a new attempt
    request.session[CHECKOUT_KEY] = checkout
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose="payment")
    except TransportError as error:
        messages.error(request, error.message)
        return redirect("pay-summary")
    context = {
        "rows": [_row(i) for i in invoices],
        "amount": format_cents(checkout["amount_cents"]),
        "stripe_js_url": settings.STRIPE_JS_URL,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "setup_secret": setup_secret,
        "setup_id": setup_id,
        "attempt_key": checkout["attempt_key"],
    }
    return render(request, "payments/card.html", context)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:  # {} for anything but a JSON object: not JSON, nested too deep, or text PostgreSQL cannot store (NUL)
        body = json.loads(request.body or b"{}")
        return body if isinstance(body, dict) and not contains_nul(body) else {}
    except (ValueError, RecursionError):
        return {}


def _payment_json(payment: Payment) -> JsonResponse:
    result_url = reverse("pay-result", kwargs={"payment_id": payment.pk})
    if payment.status == Payment.Status.SUCCEEDED:
        return JsonResponse({"status": "succeeded", "redirect": result_url})
    if payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return JsonResponse({"status": "failed", "message": payment.failure_message, "redirect": result_url})
    try:
        secret = services.payment_action_secret(payment=payment)
    except TransportError:
        secret = None  # the result page asks Stripe again
    if secret:
        refresh = reverse("pay-refresh", kwargs={"payment_id": payment.pk})
        return JsonResponse({"status": "requires_action", "client_secret": secret, "refresh": refresh})
    return JsonResponse({"status": "processing", "redirect": result_url})


def _another_card(patient_id: int, purpose: str) -> dict[str, str]:
    """A fresh SetupIntent for an error answer, so the page can take a card again without reloading."""
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose=purpose)
    except TransportError:
        return {}
    return {"setup_id": setup_id, "setup_secret": setup_secret}


@verified_patient_page("POST")
def pay_card_confirm(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """Called by the card page once Stripe.js saved the card: hold the invoices, then charge them."""
    body = _json_body(request)
    current = _checkout(request, patient_id)
    if current is None or body.get("attempt_key") != current[0]["attempt_key"]:
        earlier = Payment.objects.filter(attempt_key=str(body.get("attempt_key", "-")), patient_id=patient_id).first()
        if earlier is not None:
            return _payment_json(earlier)  # a second click on the same Pay: same payment, no second charge
        return JsonResponse(
            {"status": "failed", "message": services.STALE, "redirect": reverse("pay-summary")}, status=409
        )
    checkout, invoices = current
    card: gateway.Card | None = None
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=str(body.get("setup_intent", "")))
        if card is None:
            return JsonResponse(
                {"status": "error", "message": CARD_NOT_SAVED, **_another_card(patient_id, "payment")}, status=400
            )
        payment = services.payment_start(
            patient_id=patient_id,
            invoice_ids=[i.pk for i in invoices],
            expected_amount_cents=checkout["amount_cents"],
            attempt_key=checkout["attempt_key"],
            card=card,
            actor=Actor.patient(patient_id, ip=client_ip(request)),
        )
        try:
            payment = services.payment_charge(payment_id=payment.pk)
        except TransportError:
            # The card processor did not answer: the payment stays held and is settled or released by
            # reconciliation. Never "nothing was charged" here: the call may have gone through.
            return JsonResponse({"status": "processing", "redirect": reverse("pay-result", args=[payment.pk])})
        return _payment_json(payment)
    except ServiceError as error:
        if card is not None:
            tasks.card_detach_task.delay(card.payment_method_id)  # saved for a payment that will not happen
        return JsonResponse(
            {"status": "failed", "message": error.message, "redirect": reverse("pay-summary")}, status=409
        )
    except TransportError as error:
        return JsonResponse({"status": "error", "message": error.message}, status=503)


@verified_patient_page("POST")
def pay_refresh(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return JsonResponse({"status": "error", "message": "Payment not found."}, status=404)
    try:
        payment = services.payment_refresh(payment_id=payment.pk)
    except TransportError:
        # After the card check the charge may well have gone through: never say "nothing was charged" here.
        # The result page shows "We're confirming your payment" and asks Stripe again.
        return JsonResponse({"status": "processing", "redirect": reverse("pay-result", args=[payment.pk])})
    return _payment_json(payment)


@verified_patient_page("GET")
def pay_result(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return message_page(request, "Payment not found", "We couldn't find that payment on your account.", status=404)
    if payment.status in Payment.OPEN_STATUSES:
        try:
            services.payment_refresh(payment_id=payment.pk)  # ask Stripe so the patient sees the outcome now
        except TransportError:
            logger.warning("result page could not reach Stripe for payment %s", payment.pk)
        payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id) or payment
    return render(
        request,
        "payments/result.html",
        {
            "payment": payment,
            "amount": format_cents(
                receipts.settled_cents(payment) if payment.status == "succeeded" else payment.amount_cents
            ),
            "settled": receipts.settled_cents(payment),
            "allocations": [a for a in payment.allocations.all() if a.state != "released"],
        },
    )


@verified_patient_page("GET")
def pay_receipt(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None or payment.status != Payment.Status.SUCCEEDED or not receipts.settled_cents(payment):
        return message_page(request, "Receipt not found", "We couldn't find that receipt on your account.", status=404)
    response = HttpResponse(receipts.receipt_pdf(payment), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="alma-receipt-{payment.reference}.pdf"'
    return response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's webhook: nothing is stored unless the signature checks out."""
    try:
        event = gateway.event_from_webhook(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except gateway.BadSignature:
        logger.warning("stripe webhook with a bad signature from %s", client_ip(request))
        return HttpResponse("bad signature", status=400, content_type="text/plain")
    fresh = stripe_event_ingest(event=event)
    return HttpResponse("ok" if fresh else "duplicate", content_type="text/plain")


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
    body = _json_body(request)
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=str(body.get("setup_intent", "")))
        if card is None:
            return JsonResponse(
                {"status": "error", "message": CARD_NOT_SAVED, **_another_card(patient_id, "autopay")}, status=400
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
            {"status": "refused", "message": error.message, "code": error.code, **_another_card(patient_id, "autopay")},
            status=409,
        )
    except TransportError as error:
        return JsonResponse({"status": "error", "message": error.message}, status=503)
    messages.success(request, f"Autopay is on with your {card.brand.title()} ending in {card.last4}.")
    return JsonResponse({"status": "enrolled", "redirect": reverse("pay-summary")})


@verified_patient_page("POST")
def pay_autopay_end(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    if autopay.autopay_end(patient_id=patient_id, actor=Actor.patient(patient_id, ip=client_ip(request))):
        messages.success(request, "Autopay is off. Nothing more will be charged automatically.")
    return redirect("pay-summary")
