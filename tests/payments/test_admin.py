"""Staff: the admin shows payments with allocations and Stripe ids; ops refund one invoice's share."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alma_billing.core.models import AuditEvent
from invoices.models import Invoice
from payments.models import Payment, Refund
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices, pay, verified_client
from tests.staff import staff_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_client() -> Client:
    user = get_user_model().objects.create_superuser("ops-test", "ops@example.com", "pw")
    client = Client()
    staff_login(client, user)
    return client


def test_ops_see_a_payment_with_its_invoices_and_stripe_id(stripe_api, patient, ops_client) -> None:
    invoices = open_invoices(patient, 4_000, 7_000)
    pay(verified_client(invoices[0]), "all")
    payment = Payment.objects.get()

    page = ops_client.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()

    assert payment.stripe_payment_intent_id in page
    assert invoices[0].number in page and invoices[1].number in page
    assert "$110.00" in page and "Refund…" in page


def test_ops_refund_one_invoices_share_through_stripe(stripe_api, patient, ops_client) -> None:
    invoices = open_invoices(patient, 4_000, 7_000)
    pay(verified_client(invoices[0]), "all")
    payment = Payment.objects.get()
    url = f"/admin/payments/payment/{payment.pk}/refund/"

    assert "The whole payment ($110.00 left)" in ops_client.get(url).content.decode()
    response = ops_client.post(url, {"invoice": str(invoices[0].pk), "note": "Billed in error"})

    assert response.status_code == 302
    refund = Refund.objects.get()
    assert refund.amount_cents == 4_000 and refund.reason == Refund.Reason.STAFF and refund.stripe_refund_id
    refunds = stripe_fake.client().v1.refunds.list().data
    assert [(r.amount, r.payment_intent) for r in refunds] == [(4_000, payment.stripe_payment_intent_id)]
    first, second = (Invoice.objects.get(pk=i.pk) for i in invoices)
    assert first.status == Invoice.Status.VOID and "Billed in error" in first.void_reason
    assert second.status == Invoice.Status.PAID
    event = AuditEvent.objects.get(action="payment.refunded")
    assert event.actor is not None and event.actor.username == "ops-test"


def test_a_provider_cannot_refund(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    pay(verified_client(invoice), "all")
    payment = Payment.objects.get()
    provider_user = get_user_model().objects.create_user("dr-x", password="pw", is_staff=True)
    client = Client()
    staff_login(client, provider_user)

    client.post(f"/admin/payments/payment/{payment.pk}/refund/", {"invoice": "", "note": "please"})

    assert not Refund.objects.exists()
