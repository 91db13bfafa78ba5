"""Fixtures for paying: localstripe started once per test session, wiped for each test."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import Client

from invoices.models import Invoice
from tests.factories import InvoiceFactory, PatientFactory
from tests.payments import stripe_fake
from tests.verification.helpers import link_for, verify


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with stripe_fake.localstripe_process() as url:
        yield url


@pytest.fixture
def stripe_api(localstripe_url: str, settings: Any) -> str:
    requests.delete(f"{localstripe_url}/_config/data", timeout=5)
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_JS_URL = f"{localstripe_url}/js.stripe.com/v3/"
    return localstripe_url


@pytest.fixture
def patient() -> Any:
    return PatientFactory(phone="+12025550143")


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
