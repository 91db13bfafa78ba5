"""The verified patient's invoices: the summary (P10/P11, and the one-invoice page that takes the card itself),
Details (P12), one invoice, and the Pay choices that open a checkout.

Amounts always come from the database: the page only says which invoices; the server decides what they cost.
"""

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext

from alma_billing.core.errors import TransportError
from alma_billing.core.money import format_cents
from alma_billing.core.templatetags.patient_dates import day_text
from invoices import selectors as invoice_selectors
from invoices.models import Invoice, Practice
from payments import autopay, selectors, services
from payments.views.checkouts import OFFER_SALT, checkout_open, checkout_token, checkouts, signed_offer
from payments.views.common import NOTICES, dead_end, json_body, stale
from payments.views.rows import invoice_row, receipt_row
from verification.access import verified_patient_page


@verified_patient_page("GET")
def pay_summary(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    notice = NOTICES.get(str(request.GET.get("notice", "")))
    if notice is not None:
        messages.error(request, str(notice))  # shown on this very page (rendered below)
    summary = selectors.pay_summary_for(patient_id=patient_id)  # invoices, receipts and autopay practices: one query
    practices = summary.practices
    most_recent = summary.most_recent
    # Most patients' practices do not offer autopay: then there is no enrollment or charge to look up.
    enrollment = autopay.active_enrollment(patient_id=patient_id) if practices else None
    autopay_required = (
        [p for p in practices if p.autopay_policy == Practice.AutopayPolicy.REQUIRED] if enrollment is None else []
    )
    rows = [invoice_row(line) for line in reversed(summary.payable)]  # newest first
    # Every name the templates ask for is here (a missing one costs Django a failed lookup, with a dir() call).
    context = {
        "autopay_practices": practices,
        "autopay_required": autopay_required,
        "enrollment": enrollment,
        "autopay_charges": selectors.autopay_charges_for(patient_id=patient_id) if practices else [],
        "count": len(rows),
        "rows": rows,
        "processing": [invoice_row(line) for line in summary.processing],
        "total": format_cents(summary.total_cents),
        "most_recent": rows[0] if rows else None,
        "most_recent_rows": rows[:1],
        "most_recent_day": day_text(most_recent.date_of_service, "month_day") if most_recent else "",
        "receipts": [receipt_row(line) for line in summary.receipts],
        "pay_button": False,
        "one_page_offer": "",
    }
    if len(summary.payable) == 1 and not autopay_required:
        # One open invoice and no autopay choice to make first: the amount and the card on this very page. The page
        # carries a signed offer of exactly what it shows; the checkout opens on the Pay click (pay_checkout_start),
        # so showing the summary calls no outside service and writes no session.
        line = summary.payable[0]
        context.update(
            one_page_offer=signing.dumps({"p": patient_id, "i": [line.id], "c": line.owed_cents}, salt=OFFER_SALT),
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
            "rows": [invoice_row(i) for i in options.payable],
            "processing": [invoice_row(i) for i in options.processing],
        },
    )


@verified_patient_page("GET")
def pay_invoice_detail(request: HttpRequest, number: str, *, patient_id: int) -> HttpResponse:
    invoice = invoice_selectors.invoice_for_patient(patient_id=patient_id, number=number)
    if invoice is None:
        return dead_end(
            request, gettext("Invoice not found"), gettext("We couldn't find that invoice on your account."), status=404
        )
    return render(request, "verification/invoice.html", {"row": invoice_row(invoice), "invoice": invoice})


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
    invoices = _chosen_invoices(patient_id, str(request.POST.get("choice", "")))
    if not invoices:
        messages.error(request, gettext("That invoice is no longer open. Here is what you owe now."))
        return redirect("pay-summary")
    return redirect("pay-card", checkout_id=checkout_open(request, invoices))


@verified_patient_page("POST")
def pay_checkout_start(request: HttpRequest, *, patient_id: int) -> HttpResponse:
    """The one-invoice summary's Pay click: open a checkout for exactly what the page offered (same checkout, signed
    token and attempt key as the card page), with a SetupIntent for Stripe.js. Nothing is charged here."""
    offer = signed_offer(json_body(request).get("offer"), patient_id=patient_id)
    if offer is None:
        return stale(request, "expired")
    invoice_ids, amount_cents = offer
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    invoices = [payable[pk] for pk in invoice_ids if pk in payable]
    if len(invoices) != len(invoice_ids):
        return stale(request, "stale")
    if sum(i.owed_cents for i in invoices) != amount_cents:
        return stale(request, "changed")  # the page showed another amount: the patient sees the new one first
    try:
        setup_id, setup_secret = services.card_setup_start(patient_id=patient_id, purpose="payment")
    except TransportError as error:
        return JsonResponse(
            {"status": "error", "message": error.message + " " + gettext("Nothing was charged.")}, status=503
        )
    checkout_id = checkout_open(request, invoices)
    checkout = checkouts(request)[checkout_id]
    return JsonResponse(
        {
            "status": "ready",
            "setup_id": setup_id,
            "setup_secret": setup_secret,
            "checkout": checkout_token(patient_id=patient_id, checkout=checkout),
            "attempt_key": checkout["attempt_key"],
            "attempt_url": reverse("pay-attempt", kwargs={"attempt_key": checkout["attempt_key"]}),
        }
    )
