"""Paying flows the tests share: open invoices, a verified client, checkout, the card page, paying, autopay
enrollment, signed webhooks and a payment already received."""

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from invoices import services as invoice_services
from invoices.models import Invoice, Patient, TherapySession
from payments.models import Payment, PaymentAllocation
from tests.factories import (
    InvoiceFactory,
    PatientFactory,
    PaymentAllocationFactory,
    PaymentFactory,
    ProviderFactory,
    TherapySessionFactory,
)
from tests.payments import stripe_fake
from tests.verification.helpers import link_for, verify

WEBHOOK = "/stripe/webhook/"


def open_invoices(patient: Any, *amounts: int) -> list[Invoice]:
    """Invoices oldest first, on consecutive days of service."""
    import datetime

    today = datetime.date.today()
    return [
        InvoiceFactory(
            session__patient=patient,
            session__date_of_service=today - datetime.timedelta(days=10 * (len(amounts) - n)),
            amount_cents=amount,
        )
        for n, amount in enumerate(amounts)
    ]


def verified_client(invoice: Invoice) -> Client:
    client = Client()
    verify(client, link_for(invoice))
    return client


def checkout(client: Client, choice: str) -> str:
    """Choose what to pay; returns the card page's URL (one per checkout, so tabs stand alone)."""
    response = client.post("/pay/checkout/", {"choice": choice})
    assert response.status_code == 302 and response["Location"].startswith("/pay/card/"), response
    return str(response["Location"])


def card_page(client: Client, url: str) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 200, response.content.decode()[:500]
    page = response.content.decode()
    fields = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', page))
    return {"page": page, "url": url, **fields}


def pay(client: Client, choice: str, card: str = stripe_fake.GOOD_CARD) -> dict[str, Any]:
    """Choose what to pay, open the card page, save the card as Stripe.js would, and press Pay."""
    response = client.post("/pay/checkout/", {"choice": choice})
    assert response.status_code == 302, response
    if not response["Location"].startswith("/pay/card/"):
        return {"status": "redirected", "location": response["Location"]}
    fields = card_page(client, response["Location"])
    stripe_fake.save_card(fields["setup-id"], card)
    return confirm(client, fields)


def confirm(client: Client, fields: dict[str, str], **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/pay/card/confirm/",
        # What pay.js posts: the saved card, this Pay click's key, and the page's signed checkout.
        {
            "setup_intent": fields["setup-id"],
            "attempt_key": fields["attempt-key"],
            "checkout": fields.get("checkout"),
            **extra,
        },
        content_type="application/json",
    )
    return {"http": response.status_code, **response.json()}


def pdf_text(pdf: bytes) -> str:
    """The text drawn in a PDF, as a reader copies it (the receipt embeds a Unicode font: glyph ids plus a map back
    to characters, so only a real PDF parser reads it)."""
    import io

    from pypdf import PdfReader

    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return re.sub(r"[ \t]+", " ", text)  # the parser widens the gaps between words of a wrapped paragraph


def practice_patient(policy: str) -> tuple[Any, Any]:
    provider = ProviderFactory(practice__autopay_policy=policy)
    patient = PatientFactory(phone="+12025550143")
    invoice = InvoiceFactory(session__patient=patient, session__provider=provider, amount_cents=7_000)
    return provider, invoice


def enroll(client: Client, number: str = stripe_fake.GOOD_CARD, **choices: bool) -> dict[str, Any]:
    import re

    page = client.get("/pay/autopay/").content.decode()
    setup_id = re.search(r'data-setup-id="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    stripe_fake.save_card(setup_id, number)
    response = client.post(
        "/pay/autopay/enroll/", {"setup_intent": setup_id, **choices}, content_type="application/json"
    )
    return {"http": response.status_code, **response.json()}


def new_session_billed(
    provider: Any, patient: Any, django_capture_on_commit_callbacks: Any, amount: int = 9_000
) -> Invoice:
    session = TherapySessionFactory(
        patient=patient, provider=provider, billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=amount
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice_services.session_complete(session_id=session.pk, actor=SYSTEM)
    return Invoice.objects.get(session=session)


def post_raw(payload: bytes, signature: str | None) -> Any:
    headers: dict[str, Any] = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return Client().post(WEBHOOK, payload, content_type="application/json", **headers)


def deliver(event: dict[str, Any], capture: Callable[..., Any] | None = None) -> Any:
    """POST a correctly signed event, running on_commit work (receipts, refunds) when `capture` is given."""
    payload, signature = stripe_fake.signed_event(event)
    if capture is None:
        return post_raw(payload, signature)
    with capture(execute=True):
        return post_raw(payload, signature)


def stripe_event(event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:24]}"


def offer_of(client: Client) -> str:
    page = client.get("/pay/invoices/").content.decode()
    match = re.search(r'data-offer="([^"]+)"', page)
    assert match, "the one-invoice summary carries no card form"
    return match.group(1)


def start(client: Client, offer: Any) -> Any:
    response = client.post("/pay/checkout/start/", {"offer": offer}, content_type="application/json")
    return response.status_code, response.json()


def paid(
    patient: Patient,
    amount_cents: int = 7_000,
    *,
    days_ago: int = 1,
    source: str = Payment.Source.PATIENT,
    **invoice: Any,
) -> Payment:
    """A payment that went through (as the webhook leaves it), for one invoice of the patient."""
    when = timezone.now() - timedelta(days=days_ago)
    bill = InvoiceFactory(
        session__patient=patient, amount_cents=amount_cents, status=Invoice.Status.PAID, paid_at=when, **invoice
    )
    payment = PaymentFactory(
        patient=patient,
        amount_cents=amount_cents,
        status=Payment.Status.SUCCEEDED,
        source=source,
        attempt_key=uuid.uuid4().hex,
        card_brand="visa",
        card_last4="4242",
        succeeded_at=when,
    )
    PaymentAllocationFactory(payment=payment, invoice=bill, state=PaymentAllocation.State.SETTLED)
    return payment
