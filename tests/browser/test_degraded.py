"""Issue 11 in a real browser: a patient whose browser cannot run the card form is told what is wrong and what to do,
and never sees a Pay (or autopay) button that cannot work; a card refused at the card check says nothing was charged
and what to do next, with keyboard focus on the message.

Stripe.js is blocked with page.route(...).abort() (a content blocker, a firewall, a dead network), and JavaScript is
turned off with a context made with java_script_enabled=False.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from invoices.models import Practice
from payments.models import Payment
from tests.browser.flows import fill_card, verify_on_page
from tests.factories import PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices
from tests.verification.helpers import link_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Page, str], Path]
STRIPE_JS = re.compile(r".*/js\.stripe\.com/v3/.*")
ANY_PAY = re.compile(r"^(Pay \$|Pagar \$)")


def _block_stripe_js(page: Page) -> None:
    page.route(STRIPE_JS, lambda route: route.abort())


def _no_usable_pay_button(page: Page) -> None:
    """No Pay button a patient could press: none visible, and the one in the (hidden) form is disabled."""
    expect(page.get_by_role("button", name=ANY_PAY)).to_have_count(0)  # hidden elements have no role
    expect(page.locator("#pay-button")).to_be_disabled()
    expect(page.locator("#pay-button")).to_be_hidden()


def _two_invoices_card_page(page: Page, live_server: Any) -> None:
    """Two open invoices (so the card page is a screen of its own), on the card page of the most recent."""
    invoices = open_invoices(PatientFactory(phone="+12025550143"), 4_000, 3_000)
    verify_on_page(page, live_server.url + link_for(invoices[-1]))
    page.get_by_role("button", name=re.compile("Pay most recent invoice")).click()
    expect(page.get_by_role("heading", name=re.compile(r"\$30\.00"), level=1)).to_be_visible()


def test_stripe_js_blocked_on_the_card_page_says_what_to_do_and_hides_pay(
    live_server: Any, stripe_api: str, phone_page: Page, screenshot: Shot
) -> None:
    page = phone_page
    _block_stripe_js(page)
    _two_invoices_card_page(page, live_server)

    message = page.locator("#card-unavailable")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("role", "alert")
    expect(message).to_contain_text("The secure card form from our card processor, Stripe, didn't load")
    expect(message).to_contain_text("Nothing was charged")
    expect(message).to_contain_text("try another network or browser")
    expect(message.get_by_role("link", name="Reload this page")).to_be_visible()
    expect(message).to_be_focused()
    _no_usable_pay_button(page)
    screenshot(page, "stripe-js-blocked")
    assert Payment.objects.count() == 0


def test_stripe_js_blocked_in_spanish(live_server: Any, stripe_api: str, phone_page: Page, screenshot: Shot) -> None:
    page = phone_page
    _block_stripe_js(page)
    invoices = open_invoices(PatientFactory(phone="+12025550143"), 4_000, 3_000)
    verify_on_page(page, live_server.url + link_for(invoices[-1]))
    page.get_by_role("button", name="Español").click()
    page.get_by_role("button", name=re.compile("Pagar la factura más reciente")).click()

    message = page.locator("#card-unavailable")
    expect(message).to_be_visible()
    expect(message).to_contain_text("no se cargó")
    expect(message).to_contain_text("No se cobró nada")
    _no_usable_pay_button(page)
    screenshot(page, "stripe-js-blocked-es")


def test_a_stripe_js_that_never_answers_times_out_into_the_message(
    live_server: Any, stripe_api: str, phone_page: Page, settings: Any
) -> None:
    page = phone_page
    page.route(STRIPE_JS, lambda route: None)  # never fulfilled: a network that hangs
    _two_invoices_card_page(page, live_server)
    expect(page.locator("#card-loading")).to_be_visible()
    _no_usable_pay_button(page)
    expect(page.locator("#card-unavailable")).to_be_visible(timeout=25_000)
    expect(page.locator("#card-loading")).to_be_hidden()
    _no_usable_pay_button(page)


def _no_js_context(new_phone_context: Callable[..., BrowserContext], **extra: Any) -> Page:
    return new_phone_context(java_script_enabled=False, **extra).new_page()


def test_without_javascript_the_card_page_says_so_and_has_no_pay_button(
    live_server: Any, stripe_api: str, new_phone_context: Callable[..., BrowserContext], screenshot: Shot
) -> None:
    page = _no_js_context(new_phone_context)
    _two_invoices_card_page(page, live_server)  # the phone and code pages work without JavaScript

    notice = page.get_by_role("alert").filter(has_text="This page needs JavaScript")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Nothing was charged")
    expect(notice).to_contain_text("another browser")
    _no_usable_pay_button(page)
    expect(page.locator("#card-unavailable")).to_be_hidden()
    screenshot(page, "no-javascript")


def test_without_javascript_in_spanish(
    live_server: Any, stripe_api: str, new_phone_context: Callable[..., BrowserContext]
) -> None:
    page = _no_js_context(new_phone_context)
    invoices = open_invoices(PatientFactory(phone="+12025550143"), 4_000, 3_000)
    verify_on_page(page, live_server.url + link_for(invoices[-1]))
    page.get_by_role("button", name="Español").click()  # a plain form: works without JavaScript
    page.get_by_role("button", name=re.compile("Pagar la factura más reciente")).click()
    notice = page.get_by_role("alert").filter(has_text="JavaScript")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("No se cobró nada")
    _no_usable_pay_button(page)


def _autopay_page(page: Page, live_server: Any) -> None:
    patient = PatientFactory(phone="+12025550143")
    invoices = open_invoices(patient, 4_000, 3_000)
    Practice.objects.filter(providers__sessions__patient=patient).update(autopay_policy=Practice.AutopayPolicy.OPTIONAL)
    verify_on_page(page, live_server.url + link_for(invoices[-1]))
    page.goto(live_server.url + "/pay/autopay/")
    expect(page.get_by_role("heading", name="Autopay", level=1)).to_be_visible()


def test_autopay_page_without_stripe_js_or_javascript_offers_no_turn_on_button(
    live_server: Any, stripe_api: str, phone_page: Page, new_phone_context: Callable[..., BrowserContext]
) -> None:
    _block_stripe_js(phone_page)
    _autopay_page(phone_page, live_server)
    expect(phone_page.locator("#card-unavailable")).to_be_visible()
    expect(phone_page.get_by_role("button", name="I agree, turn on autopay")).to_have_count(0)
    expect(phone_page.locator("#pay-button")).to_be_disabled()

    page = _no_js_context(new_phone_context)
    _autopay_page(page, live_server)
    expect(page.get_by_role("alert").filter(has_text="This page needs JavaScript")).to_be_visible()
    expect(page.get_by_role("button", name="I agree, turn on autopay")).to_have_count(0)


def test_with_stripe_js_the_form_appears_and_a_decline_at_the_card_check_says_nothing_was_charged(
    live_server: Any, stripe_api: str, phone_page: Page, screenshot: Shot
) -> None:
    page = phone_page
    _two_invoices_card_page(page, live_server)
    expect(page.locator("#card-unavailable")).to_be_hidden()
    pay = page.get_by_role("button", name="Pay $30.00", exact=True)
    expect(pay).to_be_enabled()

    fill_card(page, stripe_fake.DECLINED_AT_SETUP)
    pay.click()

    errors = page.locator("#card-errors")
    expect(errors).to_contain_text("Your card was declined. Nothing was charged.")
    expect(errors).to_contain_text("Try another card, or call the number on the back of your card")
    expect(errors).to_be_focused()
    expect(pay).to_be_enabled()
    screenshot(page, "declined-nothing-charged")
    assert Payment.objects.count() == 0


def test_a_wrong_phone_moves_focus_to_the_message(live_server: Any, phone_page: Page) -> None:
    page = phone_page
    invoice = open_invoices(PatientFactory(phone="+12025550143"), 4_000)[0]
    page.goto(live_server.url + link_for(invoice))
    page.get_by_label("Phone number").fill("(617) 555-0100")
    page.get_by_role("button", name="Continue").click()
    error = page.locator("#phone-error")
    expect(error).to_contain_text("You have 4 tries left")
    expect(error).to_be_focused()
