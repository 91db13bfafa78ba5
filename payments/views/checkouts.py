"""Checkouts: which invoices a card page pays, kept in the server-side session and carried signed by the page.

Checkouts live in the server-side session, one per card page, keyed by an id in its URL, so two tabs can pay two
different invoices. Each holds the invoices, and the key of its current Pay attempt (new after a failure).
"""

import time
import uuid
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest

from invoices.models import Invoice
from payments import selectors

CHECKOUTS_KEY = "checkouts"
CHECKOUTS_KEPT = 8
# The card page also carries its checkout signed, so a Pay click does not depend on the session still holding it
# (another tab's request may have saved the session over it, or it was among the oldest and dropped).
CHECKOUT_SALT = "alma.payments.checkout"
CHECKOUT_MAX_AGE = 6 * 3600
# What the one-invoice summary offered to pay (patient, invoice ids, amount), signed: the Pay click pays exactly that
# or nothing.
OFFER_SALT = "alma.payments.summary-offer"
# How long after the card page lost its answer a Pay click that left no payment behind can still be running.
UNKNOWN_SETTLES_AFTER = settings.GUNICORN_TIMEOUT + 5


def checkouts(request: HttpRequest) -> dict[str, dict[str, Any]]:
    found = request.session.get(CHECKOUTS_KEY)
    if not isinstance(found, dict):
        return {}
    return {  # only what this code wrote (an older session shape, or anything else, is ignored)
        key: value
        for key, value in found.items()
        if isinstance(value, dict)
        and isinstance(value.get("invoice_ids"), list)
        and isinstance(value.get("attempt_key"), str)
    }


def checkout_open(request: HttpRequest, invoices: list[Invoice]) -> str:
    kept = checkouts(request)
    checkout_id = uuid.uuid4().hex[:16]
    kept[checkout_id] = {
        "invoice_ids": [i.pk for i in invoices],
        "amount_cents": sum(i.owed_cents for i in invoices),
        "attempt_key": uuid.uuid4().hex,
        "opened_at": time.time(),
    }
    for old in sorted(kept, key=lambda key: kept[key].get("opened_at", 0))[:-CHECKOUTS_KEPT]:
        del kept[old]
    request.session[CHECKOUTS_KEY] = kept
    return checkout_id


def checkout_for_attempt(request: HttpRequest, attempt_key: str) -> tuple[str, dict[str, Any]] | None:
    for checkout_id, checkout in checkouts(request).items():
        if checkout.get("attempt_key") == attempt_key:
            return checkout_id, checkout
    return None


def still_payable(patient_id: int, checkout: dict[str, Any]) -> list[Invoice] | None:
    """The checkout's invoices, re-read from the database; None when any of them stopped being payable."""
    payable = {i.pk: i for i in selectors.pay_options_for(patient_id=patient_id).payable}
    invoices = [payable[pk] for pk in checkout["invoice_ids"] if pk in payable]
    if len(invoices) != len(checkout["invoice_ids"]):
        return None
    checkout["amount_cents"] = sum(i.owed_cents for i in invoices)
    return invoices


def checkout_token(*, patient_id: int, checkout: dict[str, Any]) -> str:
    """The checkout signed for its card page (see CHECKOUT_SALT)."""
    return signing.dumps(
        {"p": patient_id, "i": checkout["invoice_ids"], "a": checkout["attempt_key"]}, salt=CHECKOUT_SALT
    )


def signed_offer(token: object, *, patient_id: int) -> tuple[list[int], int] | None:
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


def signed_checkout(token: object, *, patient_id: int, attempt_key: str) -> dict[str, Any] | None:
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
