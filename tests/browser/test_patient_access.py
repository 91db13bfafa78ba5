"""P4 in a real browser: the emailed link, the phone check, the SMS code, then the summary, on a phone-sized screen.

Elements are found by their accessible labels and roles only (the public contract in DESIGN.md).
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import dateformat
from playwright.sync_api import BrowserContext, Page, expect

from invoices.models import Invoice
from tests.browser.flows import (
    TYPED_PHONE,
    issue_insured_invoice,
    latest_code,
    link_path_from_email,
    sms_files,
    submit_code,
    submit_phone,
)
from tests.factories import InvoiceFactory
from verification.services import pay_link_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MISMATCH = "doesn't match the phone number on your profile"


def _link_path(invoice: Invoice) -> str:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    return f"/pay/{token}/"


def _assert_nothing_private(page: Page, invoice: Invoice) -> None:
    html = page.content()
    for secret in (
        invoice.patient.first_name,
        invoice.patient.last_name,
        invoice.provider.display_name,
        invoice.number,
        "70.00",
    ):
        assert secret not in html, f"{secret!r} shown before verification on {page.url}"


def _assert_summary(page: Page, invoice: Invoice) -> None:
    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()
    visit = f"Visit on {dateformat.format(invoice.session.date_of_service, 'M j, Y')} · $70.00"
    expect(page.get_by_role("heading", name=visit, level=2)).to_be_visible()
    expect(page.get_by_text("You owe $70.00")).to_be_visible()
    arithmetic = page.get_by_text("You owe: $70.00.")
    expect(arithmetic).to_be_hidden()  # inside the closed disclosure
    page.get_by_text("Why this amount?").click()
    expect(arithmetic).to_be_visible()
    expect(page.get_by_text("Toward your deductible: $50.00")).to_be_visible()
    expect(page.get_by_text("Your coinsurance: 20% of $100.00 = $20.00")).to_be_visible()


def test_p4_patient_reaches_summary_in_three_screens(
    live_server: Any, phone_page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    invoice = issue_insured_invoice()
    page = phone_page

    page.goto(live_server.url + link_path_from_email(invoice))
    expect(page.get_by_label("Phone number")).to_be_visible()
    _assert_nothing_private(page, invoice)
    screenshot(page, "1-phone")

    submit_phone(page, TYPED_PHONE)
    expect(page.get_by_label("Verification code")).to_be_visible()
    assert page.url == live_server.url + "/pay/code/"  # the token is no longer in the address bar
    _assert_nothing_private(page, invoice)
    screenshot(page, "2-code")

    submit_code(page, latest_code())
    expect(page).to_have_url(live_server.url + "/pay/invoices/")
    _assert_summary(page, invoice)
    screenshot(page, "3-summary")


def test_p4_wrong_phone_says_contact_provider(
    live_server: Any, phone_page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    invoice = InvoiceFactory(amount_cents=7_000)
    page = phone_page
    page.goto(live_server.url + _link_path(invoice))

    submit_phone(page, "(202) 555-0199")

    field = page.get_by_label("Phone number")
    expect(field).to_have_attribute("aria-invalid", "true")
    described_by = field.get_attribute("aria-describedby")
    assert described_by
    error = page.locator(f"[id='{described_by}']")
    expect(error).to_be_visible()
    expect(error).to_contain_text(MISMATCH)
    expect(error).to_contain_text("contact your provider")
    expect(field).to_have_accessible_description(re.compile(MISMATCH))
    _assert_nothing_private(page, invoice)
    assert sms_files() == []
    screenshot(page, "wrong-phone")


def test_p4_wrong_code_then_right_code(
    live_server: Any, phone_page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    invoice = InvoiceFactory(amount_cents=7_000)
    page = phone_page
    page.goto(live_server.url + _link_path(invoice))
    submit_phone(page, TYPED_PHONE)
    expect(page.get_by_label("Verification code")).to_be_visible()
    code = latest_code()

    submit_code(page, f"{(int(code) + 1) % 1_000_000:06d}")

    field = page.get_by_label("Verification code")
    expect(page.get_by_text("That code isn't right")).to_be_visible()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile("That code isn't right"))
    _assert_nothing_private(page, invoice)
    screenshot(page, "wrong-code")

    submit_code(page, code)
    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()
    expect(page.get_by_text("You owe $70.00")).to_be_visible()


def test_p4_pages_work_without_javascript(
    live_server: Any,
    new_phone_context: Callable[..., BrowserContext],
    screenshot: Callable[[Page, str], Path],
) -> None:
    invoice = issue_insured_invoice()
    page = new_phone_context(java_script_enabled=False).new_page()

    page.goto(live_server.url + link_path_from_email(invoice))
    _assert_nothing_private(page, invoice)
    submit_phone(page, TYPED_PHONE)
    expect(page.get_by_label("Verification code")).to_be_visible()
    submit_code(page, latest_code())

    expect(page).to_have_url(live_server.url + "/pay/invoices/")
    _assert_summary(page, invoice)
    screenshot(page, "summary")
