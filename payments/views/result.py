"""After the Pay click: the result page ("Payment received", or why not) and the receipt PDF (P8)."""

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import get_language, gettext

from alma_billing.core.errors import TransportError
from alma_billing.core.money import format_cents
from payments import receipts, selectors, services
from payments.models import Payment, PaymentAllocation
from payments.views.common import dead_end
from verification.access import verified_patient_page

logger = logging.getLogger(__name__)


@verified_patient_page("GET")
def pay_result(request: HttpRequest, payment_id: int, *, patient_id: int) -> HttpResponse:
    payment = selectors.payment_for_patient(patient_id=patient_id, payment_id=payment_id)
    if payment is None:
        return dead_end(
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
        return dead_end(
            request, gettext("Receipt not found"), gettext("We couldn't find that receipt on your account."), status=404
        )
    response = HttpResponse(receipts.receipt_pdf(payment, language=get_language()), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="alma-receipt-{payment.reference}.pdf"'
    return response
