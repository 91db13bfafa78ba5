"""Issue 9 in a real browser: with Redis down, a patient whose card was charged reads "Payment received"."""

from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from invoices.models import Invoice
from payments.models import Payment
from tests.browser.flows import card_page_for_one_invoice, expect_received, pay_on_page
from tests.faults.conftest import broker  # noqa: F401  (fixture used here)
from tests.faults.redis_server import PrivateRedis

pytestmark = [pytest.mark.browser, pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_redis_down_the_patient_who_paid_reads_payment_received(
    broker: PrivateRedis,  # noqa: F811
    live_server: Any,
    stripe_api: str,
    phone_page: Page,
    screenshot,
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    broker.stop()  # the broker dies while the patient types their card

    pay_on_page(page, "$70.00")

    expect_received(page)
    expect(page.get_by_text("Nothing was charged")).to_have_count(0)
    screenshot(page, "redis-down-payment-received")
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    assert Payment.objects.get().status == Payment.Status.SUCCEEDED
    assert not mail.outbox  # the receipt waits for the broker or the reconciliation sweep
