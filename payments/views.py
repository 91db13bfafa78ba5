"""Verified patient pages: the summary (P10/P11), Details (P12), card entry, the result and the receipt (P8).

Amounts always come from the database: the page only says which invoices; the server decides what they cost.
"""

import json
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language, gettext, gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alma_billing.core import budget
from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.http import client_ip, contains_nul
from alma_billing.core.money import format_cents
from invoices import selectors as invoice_selectors
from invoices.explain import explanation_lines
from invoices.models import Invoice, Practice
from payments import autopay, receipts, selectors, services
from payments.gateways import stripe as gateway
from payments.models import Payment, PaymentAllocation
from payments.webhooks import EventFailed, stripe_event_ingest
from verification.access import verified_patient_page

logger = logging.getLogger(__name__)

CARD_NOT_SAVED = gettext_lazy("We couldn't read that card. Please enter it again.")


def _dead_end(request: HttpRequest, heading: str, message: str, *, status: int = 404) -> HttpResponse:
    """A verified patient's "not found": what happened, a way back to their invoices (and the footer's support)."""
    context = {"heading": heading, "message": message, "back_url": reverse("pay-summary")}
    return render(request, "verification/link_problem.html", context, status=status)


def _row(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice": invoice,
        "amount": format_cents(invoice.owed_cents),
        "explanation": explanation_lines(invoice.calculation),
    }


@verified_patient_page("GET")
def pay_summary(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    notice = NOTICES.get(str(request.GET.get("notice", "")))
    if notice is not None:
        messages.error(request, str(notice))  # shown on this very page (rendered below)
    options = selectors.pay_options_for(patient_id=patient_id)
    recent = selectors.recent_payments_for(patient_id=patient_id)
    most_recent = options.most_recent
    practices = autopay.autopay_practices(patient_id=patient_id)
    # Most patients' practices do not offer autopay: then there is no enrollment or charge to look up.
    enrollment = autopay.active_enrollment(patient_id=patient_id) if practices else None
    autopay_required = (
        [p for p in practices if p.autopay_policy == Practice.AutopayPolicy.REQUIRED] if enrollment is None else []
    )
    context = {
        "autopay_practices": practices,
        "autopay_required": autopay_required,
        "enrollment": enrollment,
        "autopay_charges": selectors.autopay_charges_for(patient_id=patient_id) if practices else [],
        "options": options,
        "rows": [_row(i) for i in reversed(options.payable)],
        "processing": [_row(i) for i in options.processing],
        "total": format_cents(options.total_cents),
        "most_recent": _row(most_recent) if most_recent else None,
        "recent_payments": recent,
    }
    if len(options.payable) == 1 and not autopay_required:
        # One open invoice and no autopay choice to make first: the amount and the card on this very page. The page
        # carries a signed offer of exactly what it shows; the checkout opens on the Pay click (pay_checkout_start),
        # so showing the summary calls no outside service and writes no session.
        invoice = options.payable[0]
        context.update(
            one_page_offer=signing.dumps(
                {"p": patient_id, "i": [invoice.pk], "c": invoice.owed_cents}, salt=OFFER_SALT
            ),
            stripe_js_url=settings.STRIPE_JS_URL,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
        )
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
        return _dead_end(
            request, gettext("Invoice not found"), gettext("We couldn't find that invoice on your account."), status=404
        )
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


# Checkouts live in the server-side session, one per card page, keyed by an id in its URL, so two tabs can pay two
# different invoices. Each holds the invoices, and the key of its current Pay attempt (new after a failure).
CHECKOUTS_KEY = "checkouts"
CHECKOUTS_KEPT = 8
# The card page also carries its checkout signed, so a Pay click does not depend on the session still holding it
# (another tab's request may have saved the session over it, or it was among the oldest and dropped).
CHECKOUT_SALT = "alma.payments.checkout"
CHECKOUT_MAX_AGE = 6 * 3600
# What the one-invoice summary offered to pay (patient, invoice ids, amount), signed: the Pay click pays exactly that
# or nothing.
OFFER_SALT = "alma.payments.summary-offer"
EXPIRED = gettext_lazy("This payment page has expired. Nothing was charged. Here is what you owe now.")
# How long after the card page lost its answer a Pay click that left no payment behind can still be running.
UNKNOWN_SETTLES_AFTER = settings.GUNICORN_TIMEOUT + 5


def _checkouts(request: HttpRequest) -> dict[str, dict[str, Any]]:
    checkouts = request.session.get(CHECKOUTS_KEY)
    if not isinstance(checkouts, dict):
        return {}
    return {  # only what this code wrote (an older session shape, or anything else, is ignored)
        key: value
        for key, value in checkouts.items()
        if isinstance(value, dict)
        and isinstance(value.get("invoice_ids"), list)
        and isinstance(value.get("attempt_key"), str)
    }


def _checkout_open(request: HttpRequest, invoices: list[Invoice]) -> str:
    checkouts = _checkouts(request)
    checkout_id = uuid.uuid4().hex[:16]
    checkouts[checkout_id] = {
        "invoice_ids": [i.pk for i in invoices],
        "amount_cents": sum(i.owed_cents for i in invoices),
        "attempt_key": uuid.uuid4().hex,
        "opened_at": time.time(),
    }
    for old in sorted(checkouts, key=lambda key: checkouts[key].get("opened_at", 0))[:-CHECKOUTS_KEPT]:
        del checkouts[old]
    request.session[CHECKOUTS_KEY] = checkouts
    return checkout_id


def _checkout_for_attempt(request: HttpRequest, attempt_key: str) -> tuple[str, dict[str, Any]] | None:
    for checkout_id, checkout in _checkouts(request).items():
        if checkout.get("attempt_key") == attempt_key:
            return checkout_id, checkout
    return None


def _still_payable(patient_id: int, checkout: dict[str, Any]) -> list[Invoice] | None:
    """The checkout's invoices, re-read from the database; None when any of them stopped being payable."""
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    invoices = [payable[pk] for pk in checkout["invoice_ids"] if pk in payable]
    if len(invoices) != len(checkout["invoice_ids"]):
        return None
    checkout["amount_cents"] = sum(i.owed_cents for i in invoices)
    return invoices


@verified_patient_page("POST")
def pay_checkout(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    invoices = _chosen_invoices(patient_id, str(request.POST.get("choice", "")))
    if not invoices:
        messages.error(request, gettext("That invoice is no longer open. Here is what you owe now."))
        return redirect("pay-summary")
    return redirect("pay-card", checkout_id=_checkout_open(request, invoices))


def _signed_offer(token: object, *, patient_id: int) -> tuple[list[int], int] | None:
    """The invoice ids and amount the summary offered, if the signature and patient check out."""
    if not isinstance(token, str) or len(token) > 2000:
        return None
    try:
        data = signing.loads(token, salt=OFFER_SALT, max_age=CHECKOUT_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("p") != patient_id:
        return None
    invoice_ids, amount_cents = data.get("i"), data.get("c")
    if not isinstance(invoice_ids, list) or not invoice_ids or not all(isinstance(i, int) for i in invoice_ids):
        return None
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        return None
    return invoice_ids, amount_cents


@verified_patient_page("POST")
def pay_checkout_start(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """The one-invoice summary's Pay click: open a checkout for exactly what the page offered (same checkout, signed
    token and attempt key as the card page), with a SetupIntent for Stripe.js. Nothing is charged here."""
    offer = _signed_offer(_json_body(request).get("offer"), patient_id=patient_id)
    if offer is None:
        return _stale(request, "expired")
    invoice_ids, amount_cents = offer
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    invoices = [payable[pk] for pk in invoice_ids if pk in payable]
    if len(invoices) != len(invoice_ids):
        return _stale(request, "stale")
    if sum(i.owed_cents for i in invoices) != amount_cents:
        return _stale(request, "changed")  # the page showed another amount: the patient sees the new one first
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose="payment")
    except TransportError as error:
        return JsonResponse(
            {"status": "error", "message": error.message + " " + gettext("Nothing was charged.")}, status=503
        )
    checkout_id = _checkout_open(request, invoices)
    checkout = _checkouts(request)[checkout_id]
    return JsonResponse(
        {
            "status": "ready",
            "setup_id": setup_id,
            "setup_secret": setup_secret,
            "checkout": signing.dumps(
                {"p": patient_id, "i": checkout["invoice_ids"], "a": checkout["attempt_key"]}, salt=CHECKOUT_SALT
            ),
            "attempt_key": checkout["attempt_key"],
            "attempt_url": reverse("pay-attempt", kwargs={"attempt_key": checkout["attempt_key"]}),
        }
    )


@verified_patient_page("GET")
def pay_card(request: HttpRequest, checkout_id: str, *, patient_id: int) -> HttpResponse:
    checkout = _checkouts(request).get(checkout_id)
    if checkout is None:
        messages.info(request, gettext("That payment page has expired. Here is what you owe now."))
        return redirect("pay-summary")
    earlier = Payment.objects.filter(attempt_key=checkout["attempt_key"], patient_id=patient_id).first()
    if earlier is not None and earlier.status not in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return redirect("pay-result", payment_id=earlier.pk)  # this Pay click already went through
    invoices = _still_payable(patient_id, checkout)
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
        "checkout_token": signing.dumps(
            {"p": patient_id, "i": checkout["invoice_ids"], "a": checkout["attempt_key"]}, salt=CHECKOUT_SALT
        ),
        "rows": [_row(i) for i in invoices],
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
    found = _checkout_for_attempt(request, attempt_key)
    if found is None:
        # No payment (yet) and no page to time it against: say what we know, and how to find out without paying twice.
        return _dead_end(
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
        return _dead_end(
            request, gettext("Payment not found"), gettext("We couldn't find that payment on your account."), status=404
        )
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    wanted = [a.invoice_id for a in payment.allocations.all()]
    invoices = [payable[pk] for pk in wanted if pk in payable]
    if payment.status not in (Payment.Status.FAILED, Payment.Status.CANCELED) or len(invoices) != len(wanted):
        messages.info(request, gettext("Those invoices were paid or are being paid. Here is what you owe now."))
        return redirect("pay-summary")
    return redirect("pay-card", checkout_id=_checkout_open(request, invoices))


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


def _another_card(patient_id: int, purpose: str) -> dict[str, str]:
    """A fresh SetupIntent for an error answer, so the page can take a card again without reloading."""
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose=purpose)
    except TransportError:
        return {}
    return {"setup_id": setup_id, "setup_secret": setup_secret}


def _signed_checkout(token: object, *, patient_id: int, attempt_key: str) -> dict[str, Any] | None:
    """The checkout the card page carried, if its signature, patient and attempt all check out."""
    if not isinstance(token, str) or len(token) > 2000:
        return None
    try:
        data = signing.loads(token, salt=CHECKOUT_SALT, max_age=CHECKOUT_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("p") != patient_id or data.get("a") != attempt_key:
        return None
    invoice_ids = data.get("i")
    if not isinstance(invoice_ids, list) or not all(isinstance(i, int) for i in invoice_ids) or not invoice_ids:
        return None
    return {"invoice_ids": invoice_ids, "attempt_key": attempt_key, "amount_cents": 0}


def _forget_setup_card(patient_id: int, setup_intent_id: str) -> None:
    """A card Stripe.js saved for a payment that will not happen is not kept (best effort; reconciliation-free)."""
    if not setup_intent_id:
        return
    try:
        card = services.card_saved(patient_id=patient_id, setup_intent_id=setup_intent_id)
    except TransportError:
        return
    if card is not None:
        services.card_forget_later(payment_method_id=card.payment_method_id)


# Why a Pay click was turned back, said on the summary it redirects to. Passed as a code in that URL rather than
# queued as a session message, which would show up on whatever page this session renders next (another tab's
# "Payment received", say).
NOTICES = {"stale": services.STALE, "expired": EXPIRED, "changed": services.CHANGED}


def _stale(request: HttpRequest, code: str) -> JsonResponse:
    """This tab lost a race (another tab or device paid first), or its page expired: the summary says why and
    shows what is owed."""
    code = code if code in NOTICES else "stale"
    redirect_to = reverse("pay-summary") + f"?notice={code}"
    return JsonResponse({"status": "failed", "message": str(NOTICES[code]), "redirect": redirect_to}, status=409)


@verified_patient_page("POST")
def pay_card_confirm(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """Called by the card page once Stripe.js saved the card: hold the invoices, then charge them."""
    body = _json_body(request)
    attempt_key = body.get("attempt_key")
    attempt_key = attempt_key if isinstance(attempt_key, str) and 0 < len(attempt_key) <= 64 else "-"
    earlier = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
    if earlier is not None:
        return _payment_json(earlier)  # a second click on the same Pay: same payment, no second charge
    setup_intent = body.get("setup_intent")
    setup_intent = setup_intent if isinstance(setup_intent, str) else ""
    checkout = _signed_checkout(body.get("checkout"), patient_id=patient_id, attempt_key=attempt_key)
    if checkout is None:
        found = _checkout_for_attempt(request, attempt_key)
        checkout = found[1] if found else None
    if checkout is None:
        _forget_setup_card(patient_id, setup_intent)
        return _stale(request, "expired")
    invoices = _still_payable(patient_id, checkout)
    if invoices is None:
        _forget_setup_card(patient_id, setup_intent)
        return _stale(request, "stale")
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
                {"status": "error", "message": CARD_NOT_SAVED, **_another_card(patient_id, "payment")}, status=400
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
            services.card_forget_later(payment_method_id=card.payment_method_id)  # no payment will use it
        return _stale(request, error.code)
    except TransportError as error:
        # Nothing was held, so nothing was sent to be charged: that sentence is true here.
        return JsonResponse(
            {
                "status": "error",
                "message": error.message + " " + gettext("Nothing was charged."),
                **_another_card(patient_id, "payment"),
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


@verified_patient_page("GET")
def pay_result(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return _dead_end(
            request, gettext("Payment not found"), gettext("We couldn't find that payment on your account."), status=404
        )
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
                receipts.settled_cents(payment) if payment.status == Payment.Status.SUCCEEDED else payment.amount_cents
            ),
            "settled": receipts.settled_cents(payment),
            "refunded": format_cents(payment.refunded_cents) if payment.refunded_cents else "",
            "allocations": [a for a in payment.allocations.all() if a.state != PaymentAllocation.State.RELEASED],
        },
    )


@verified_patient_page("GET")
def pay_receipt(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None or payment.status != Payment.Status.SUCCEEDED or not receipts.settled_cents(payment):
        return _dead_end(
            request, gettext("Receipt not found"), gettext("We couldn't find that receipt on your account."), status=404
        )
    response = HttpResponse(receipts.receipt_pdf(payment, language=get_language()), content_type="application/pdf")
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
    messages.success(
        request,
        gettext("Autopay is on with your {brand} ending in {last4}.").format(
            brand=card.brand.title(), last4=card.last4
        ),
    )
    return JsonResponse({"status": "enrolled", "redirect": reverse("pay-summary")})


@verified_patient_page("POST")
def pay_autopay_end(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    if autopay.autopay_end(patient_id=patient_id, actor=Actor.patient(patient_id, ip=client_ip(request))):
        messages.success(request, gettext("Autopay is off. Nothing more will be charged automatically."))
    return redirect("pay-summary")
