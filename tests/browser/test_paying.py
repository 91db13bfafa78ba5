"""P5, P8, P10-P12 in a real browser: from the emailed link to a paid invoice and its receipt, on a phone-sized screen.

The card page loads localstripe's fake Stripe.js (plain inputs with placeholders instead of Stripe's iframe); every
other element is found by its accessible name, role or text (the public contract in DESIGN.md). After each payment
the database and localstripe are both checked: what the patient saw is what happened.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.utils import dateformat
from playwright.sync_api import Page, expect

from invoices.models import Invoice, Patient
from payments.models import Payment, PaymentAllocation
from tests.browser.flows import (
    card_page_for_one_invoice,
    expect_received,
    fill_card,
    issue_insured_invoice,
    link_path_from_email,
    open_invoices_page,
    pay_button,
    pay_on_page,
    verify_on_page,
)
from tests.payments import stripe_fake

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Page, str], Path]
PAY_BUTTON = re.compile(r"^Pay \$\d+\.\d\d$")
DIDNT_GO_THROUGH = "Your payment didn't go through"


# --- steps -------------------------------------------------------------------------------------------------------


def _visit(invoice: Invoice) -> str:
    return f"Visit on {dateformat.format(invoice.session.date_of_service, 'M j, Y')}"


# --- checks ------------------------------------------------------------------------------------------------------


def _statuses(invoices: list[Invoice]) -> list[str]:
    by_pk = dict(Invoice.objects.filter(pk__in=[i.pk for i in invoices]).values_list("pk", "status"))
    return [by_pk[i.pk] for i in invoices]


def _succeeded_intents(invoice: Invoice) -> list[Any]:
    customer_id = Patient.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert customer_id
    return [i for i in stripe_fake.intents_for(customer_id) if i.status == "succeeded"]


def _paid_by_one_payment(invoices: list[Invoice]) -> Payment:
    """Exactly one succeeded Payment and one succeeded PaymentIntent at localstripe, covering exactly these."""
    [payment] = Payment.objects.filter(status=Payment.Status.SUCCEEDED)
    settled = PaymentAllocation.objects.filter(payment=payment, state=PaymentAllocation.State.SETTLED)
    assert sorted(settled.values_list("invoice_id", flat=True)) == sorted(i.pk for i in invoices)
    assert payment.amount_cents == sum(i.amount_cents for i in invoices)
    [intent] = _succeeded_intents(invoices[0])
    assert intent.id == payment.stripe_payment_intent_id
    assert intent.amount == payment.amount_cents
    return payment


# --- tests -------------------------------------------------------------------------------------------------------


def test_p10_one_invoice_from_email_to_receipt(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    invoice = issue_insured_invoice()  # $70.00, emailed with its link
    page = phone_page
    verify_on_page(page, live_server.url + link_path_from_email(invoice))
    expect(page.get_by_text("You owe $70.00")).to_be_visible()
    screenshot(page, "1-summary")

    # One open invoice: the card is entered on the summary itself.
    expect(page.get_by_role("heading", name=f"{_visit(invoice)} · $70.00", level=2)).to_be_visible()
    fill_card(page, stripe_fake.GOOD_CARD)
    screenshot(page, "2-card")
    pay_button(page, "$70.00").click()

    expect_received(page)
    expect(page.get_by_text("We received $70.00 from your Visa ending in 4242")).to_be_visible()
    expect(page.get_by_text(invoice.number)).to_be_visible()
    screenshot(page, "3-received")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download receipt").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".pdf")
    assert Path(download.path()).read_bytes().startswith(b"%PDF")

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.paid_at is not None
    payment = _paid_by_one_payment([invoice])
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    [receipt] = [m for m in mail.outbox if m.subject == "Your payment to Alma was received"]
    assert receipt.to == [invoice.patient.email]


def test_p11_pay_all_outstanding(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoices = open_invoices_page(page, live_server, 4_000, 5_500, 7_000)
    expect(page.get_by_text("You have 3 unpaid invoices totaling $165.00.")).to_be_visible()
    screenshot(page, "1-summary")

    page.get_by_role("button", name="Pay all outstanding").click()
    expect(page.get_by_text("For 3 invoices:")).to_be_visible()
    pay_on_page(page, "$165.00")

    expect_received(page)
    for invoice in invoices:
        expect(page.get_by_text(invoice.number)).to_be_visible()
    screenshot(page, "2-received")
    assert _statuses(invoices) == [Invoice.Status.PAID] * 3
    _paid_by_one_payment(invoices)


def test_p11_pay_most_recent_then_p12_pay_the_oldest_from_details(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    oldest, middle, newest = invoices = open_invoices_page(page, live_server, 4_000, 5_500, 7_000)

    page.get_by_role("button", name="Pay most recent invoice").click()
    expect(page.get_by_text(f"For your {_visit(newest).lower()}")).to_be_visible()
    pay_on_page(page, "$70.00")
    expect_received(page)
    assert _statuses(invoices) == [Invoice.Status.OPEN, Invoice.Status.OPEN, Invoice.Status.PAID]

    page.get_by_role("link", name="Back to your invoices").click()
    expect(page.get_by_text("You have 2 unpaid invoices totaling $95.00.")).to_be_visible()
    page.get_by_role("button", name="Details").click()
    expect(page.get_by_role("heading", name="Choose an invoice to pay", level=1)).to_be_visible()
    buttons = page.get_by_role("button", name=re.compile(r"^Pay this invoice"))
    expect(buttons).to_have_text(["Pay this invoice ($40.00)", "Pay this invoice ($55.00)"])  # oldest first
    screenshot(page, "1-details")

    page.get_by_role("region", name=f"{_visit(oldest)} · $40.00").get_by_role("button").click()
    pay_on_page(page, "$40.00")
    expect_received(page)
    screenshot(page, "2-received")
    assert _statuses(invoices) == [Invoice.Status.PAID, Invoice.Status.OPEN, Invoice.Status.PAID]

    page.get_by_role("link", name="Back to your invoices").click()
    expect(page.get_by_text("You owe $55.00")).to_be_visible()  # only the middle one is left, and offered
    expect(page.get_by_role("heading", name=f"{_visit(middle)} · $55.00", level=2)).to_be_visible()
    expect(page.get_by_role("button", name="Pay $55.00", exact=True)).to_be_enabled()
    screenshot(page, "3-summary")
    assert Payment.objects.filter(status=Payment.Status.SUCCEEDED).count() == 2
    assert len(_succeeded_intents(oldest)) == 2


def test_p5_declined_card_then_a_good_one(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    pay_on_page(page, "$70.00", stripe_fake.DECLINED_AT_CHARGE)

    expect(page.get_by_role("heading", name=DIDNT_GO_THROUGH, level=1)).to_be_visible()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("declined")
    expect(alert).to_contain_text("Nothing was charged.")
    screenshot(page, "1-declined")
    assert _statuses([invoice]) == [Invoice.Status.OPEN]

    page.get_by_role("link", name="Try another card").click()
    pay_on_page(page, "$70.00")
    expect_received(page)
    expect(page.get_by_text("ending in 4242")).to_be_visible()

    assert _statuses([invoice]) == [Invoice.Status.PAID]
    failed = Payment.objects.get(status=Payment.Status.FAILED)
    assert failed.card_last4 == "0341" and failed.failure_message
    assert Payment.objects.count() == 2
    assert PaymentAllocation.objects.filter(invoice=invoice, state=PaymentAllocation.State.SETTLED).count() == 1
    _paid_by_one_payment([invoice])


def test_declined_at_setup_shows_the_reason_in_the_page(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    pay_on_page(page, "$70.00", stripe_fake.DECLINED_AT_SETUP)

    errors = page.locator("#card-errors")
    expect(errors).to_have_attribute("role", "alert")
    expect(errors).to_contain_text("declined")
    expect(pay_button(page, "$70.00")).to_be_enabled()  # ready for another card
    expect(page).to_have_url(re.compile(re.escape(live_server.url) + r"/pay/invoices/$"))
    screenshot(page, "declined-at-setup")

    assert Payment.objects.count() == 0
    assert _statuses([invoice]) == [Invoice.Status.OPEN]
    customer_id = Patient.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert stripe_fake.intents_for(customer_id) == []


def _authenticate(page: Page, choice: str, screenshot: Shot | None = None) -> None:
    """The fake's in-page 3-D Secure box (it asks when the card is saved and again when it is charged)."""
    button = page.get_by_role("button", name=choice)
    expect(button).to_be_visible()
    if screenshot:
        screenshot(page, "3ds-box")
    button.click()


def test_3d_secure_completed_in_the_page(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    pay_on_page(page, "$70.00", stripe_fake.THREE_D_SECURE)

    _authenticate(page, "Complete authentication", screenshot)  # saving the card
    _authenticate(page, "Complete authentication")  # charging it
    expect_received(page)
    assert _statuses([invoice]) == [Invoice.Status.PAID]
    _paid_by_one_payment([invoice])


def test_3d_secure_failed_does_not_pay(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    pay_on_page(page, "$70.00", stripe_fake.THREE_D_SECURE)

    _authenticate(page, "Complete authentication")  # saving the card
    _authenticate(page, "Fail authentication")  # charging it
    expect(page.get_by_role("heading", name=DIDNT_GO_THROUGH, level=1)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("not completed")
    screenshot(page, "failed")
    assert _statuses([invoice]) == [Invoice.Status.OPEN]
    assert Payment.objects.get().status == Payment.Status.FAILED
    assert _succeeded_intents(invoice) == []


def test_double_click_on_pay_charges_once(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    page = phone_page
    invoice = card_page_for_one_invoice(page, live_server)
    expect(page.get_by_role("button", name="Pay $70.00", exact=True)).to_be_enabled()
    fill_card(page, stripe_fake.GOOD_CARD)
    confirms: list[str] = []
    page.on("request", lambda request: confirms.append(request.url) if "/pay/card/confirm/" in request.url else None)

    pay_button(page, "$70.00").dblclick()
    expect_received(page)

    assert len(confirms) == 1  # one Pay press is one attempt: the button is disabled while it runs
    assert Payment.objects.count() == 1
    _paid_by_one_payment([invoice])
    customer_id = Patient.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert len(stripe_fake.intents_for(customer_id)) == 1
