"""The patient pay pages and Stripe's webhook, one module per page family (alma_billing/urls.py routes them):

- `summary`: the summary (P10/P11, the one-invoice page), Details (P12), one invoice, the Pay choices;
- `card`: the card page, its Pay click (confirm), the lost-answer attempt page, "Try another card", 3-D Secure;
- `result`: the result page and the receipt PDF (P8);
- `autopay`: enroll, see, replace or end autopay (P6, P7);
- `webhook`: Stripe's webhook endpoint;
- `checkouts` and `common`: what they share (checkouts in the session and signed, dead ends, JSON answers).
"""

from payments.views.autopay import pay_autopay, pay_autopay_end, pay_autopay_enroll
from payments.views.card import pay_attempt, pay_card, pay_card_confirm, pay_refresh, pay_retry
from payments.views.checkouts import OFFER_SALT
from payments.views.result import pay_receipt, pay_result
from payments.views.summary import pay_checkout, pay_checkout_start, pay_details, pay_invoice_detail, pay_summary
from payments.views.webhook import stripe_webhook

__all__ = [
    "OFFER_SALT",
    "pay_attempt",
    "pay_autopay",
    "pay_autopay_end",
    "pay_autopay_enroll",
    "pay_card",
    "pay_card_confirm",
    "pay_checkout",
    "pay_checkout_start",
    "pay_details",
    "pay_invoice_detail",
    "pay_receipt",
    "pay_refresh",
    "pay_result",
    "pay_retry",
    "pay_summary",
    "stripe_webhook",
]
