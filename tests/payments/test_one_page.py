"""Issue 11, one open invoice: the summary takes the card itself. Its Pay click opens the checkout through
/pay/checkout/start/, which pays exactly what the page offered (signed) or nothing, and is as safe as the card page:
server-computed amount, signed checkout, one attempt key per click."""

from typing import Any

import pytest
from django.core import signing
from django.test import Client

from invoices.models import Invoice
from payments.models import Payment
from payments.views import OFFER_SALT
from tests.factories import InvoiceFactory, PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import confirm, offer_of, open_invoices, start, verified_client

pytestmark = pytest.mark.django_db


def test_one_invoice_is_paid_from_the_summary(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    summary = client.get("/pay/invoices/").content.decode()
    assert "You owe" in summary and "disabled>Pay $70.00</button>" in summary and ">Details</button>" in summary
    assert "Pay most recent invoice" not in summary

    status, started = start(client, offer_of(client))
    assert status == 200 and started["status"] == "ready"
    stripe_fake.save_card(started["setup_id"], stripe_fake.GOOD_CARD)
    result = confirm(
        client,
        {"setup-id": started["setup_id"], "attempt-key": started["attempt_key"], "checkout": started["checkout"]},
    )
    assert result["status"] == "succeeded"
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    assert Payment.objects.get().amount_cents == 7_000


def test_showing_the_summary_calls_no_stripe_and_opens_no_checkout(settings: Any, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: a call would fail the page
    response = client.get("/pay/invoices/")
    assert response.status_code == 200 and "data-offer=" in response.content.decode()
    assert "checkouts" not in client.session


def test_stripe_down_at_the_pay_click_says_nothing_was_charged(settings: Any, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    offer = offer_of(client)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    status, answer = start(client, offer)
    assert status == 503 and "Nothing was charged." in answer["message"]
    assert Payment.objects.count() == 0


@pytest.mark.parametrize("offer", [None, "", 7, ["x"], "x" * 5000, "not-signed", "abc:def\x00"])
def test_a_forged_or_broken_offer_opens_nothing(stripe_api: str, patient: Any, offer: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    status, answer = start(client, offer)
    assert status == 409 and answer["status"] == "failed" and answer["redirect"] == "/pay/invoices/?notice=expired"
    assert "checkouts" not in client.session


def test_another_patients_offer_or_a_changed_amount_opens_nothing(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    other = InvoiceFactory(session__patient=PatientFactory(phone="+12025550188"), amount_cents=100)
    forged = signing.dumps({"p": other.patient_id, "i": [other.pk], "c": 100}, salt=OFFER_SALT)
    assert start(client, forged)[0] == 409
    mine_but_other_invoice = signing.dumps({"p": invoice.patient_id, "i": [other.pk], "c": 100}, salt=OFFER_SALT)
    assert start(client, mine_but_other_invoice)[1]["redirect"] == "/pay/invoices/?notice=stale"
    cheaper = signing.dumps({"p": invoice.patient_id, "i": [invoice.pk], "c": 1}, salt=OFFER_SALT)
    status, answer = start(client, cheaper)
    assert status == 409 and answer["redirect"] == "/pay/invoices/?notice=changed"
    assert Payment.objects.count() == 0 and "checkouts" not in client.session


def test_an_offer_whose_invoice_was_paid_meanwhile_sends_the_patient_to_what_is_owed(
    stripe_api: str, patient: Any
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    offer = offer_of(client)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID)
    status, answer = start(client, offer)
    assert status == 409 and answer["redirect"] == "/pay/invoices/?notice=stale"


def test_an_unverified_browser_cannot_start_a_checkout(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    offer = offer_of(verified_client(invoice))
    response = Client().post("/pay/checkout/start/", {"offer": offer}, content_type="application/json")
    assert response.status_code == 401
    assert Payment.objects.count() == 0


def test_several_invoices_keep_the_choice_and_no_card_on_the_summary(stripe_api: str, patient: Any) -> None:
    invoices = open_invoices(patient, 4_000, 3_000)
    summary = verified_client(invoices[-1]).get("/pay/invoices/").content.decode()
    assert "Pay most recent invoice" in summary and "Pay all outstanding" in summary and "card-form" not in summary
