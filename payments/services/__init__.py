"""Writes for payments, by subdomain. Import from here (`from payments.services import payment_start`): the
modules below are where each lives, this is the public surface.

- `cards`: the patient's Stripe customer, saving a card (SetupIntent), detaching cards we must not keep;
- `lifecycle`: the payment state machine (hold, charge, settle or release, apply what Stripe reports);
- `refunds`: surplus, claim (P13), staff and Stripe-dashboard refunds;
- `disputes`: card disputes.
"""

from payments.services.cards import (
    card_detach,
    card_forget_later,
    card_saved,
    card_setup_start,
    patient_customer_id,
    payment_forget_card,
)
from payments.services.disputes import payment_record_dispute
from payments.services.lifecycle import (
    CHANGED,
    IN_FLIGHT,
    STALE,
    UNKNOWN_AT_STRIPE,
    payment_abandon,
    payment_action_secret,
    payment_apply_intent,
    payment_cancel,
    payment_charge,
    payment_flag,
    payment_refresh,
    payment_release_unknown,
    payment_start,
)
from payments.services.refunds import (
    payment_record_refunded_total,
    refund_for_claim,
    refund_issue,
    surplus_refund,
)

__all__ = [
    "CHANGED",
    "IN_FLIGHT",
    "STALE",
    "UNKNOWN_AT_STRIPE",
    "card_detach",
    "card_forget_later",
    "card_saved",
    "card_setup_start",
    "patient_customer_id",
    "payment_abandon",
    "payment_action_secret",
    "payment_apply_intent",
    "payment_cancel",
    "payment_charge",
    "payment_flag",
    "payment_forget_card",
    "payment_record_dispute",
    "payment_record_refunded_total",
    "payment_refresh",
    "payment_release_unknown",
    "payment_start",
    "refund_for_claim",
    "refund_issue",
    "surplus_refund",
]
