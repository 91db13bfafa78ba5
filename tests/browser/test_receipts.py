"""Receipts later in a real browser: a patient with nothing open asks for their receipts on the public page, opens
the emailed link, confirms their phone and downloads last year's receipt (phone-sized screen)."""

import re
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from tests.browser.flows import TYPED_PHONE, latest_code, submit_code, submit_phone
from tests.factories import PatientFactory
from tests.payments.flows import paid

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_patient_with_nothing_open_gets_last_years_receipt(
    phone_page: Page, live_server: Any, screenshot: Any
) -> None:
    patient = PatientFactory(phone="+12025550143", email="zoe@example.com", first_name="Zoë", last_name="Nguyễn")
    payment = paid(patient, 7_000, days_ago=330)
    page = phone_page

    page.goto(live_server.url + "/pay/receipts/")
    field = page.get_by_label("Email address")
    field.fill("not an email")
    page.get_by_role("button", name="Send my receipts link").click()
    expect(page.get_by_role("alert")).to_contain_text("like name@example.com")
    assert mail.outbox == []
    page.get_by_label("Email address").fill("Zoe@Example.com")
    page.get_by_role("button", name="Send my receipts link").click()
    expect(page.get_by_role("status")).to_contain_text("If that address is on file with Alma")
    screenshot(page, "sent")

    [message] = mail.outbox
    match = re.search(r"/pay/[A-Za-z0-9_-]{43}/", str(message.body))
    assert match, message.body
    page.goto(live_server.url + match.group(0))
    submit_phone(page, TYPED_PHONE)
    submit_code(page, latest_code())
    expect(page.get_by_text("You have no unpaid invoices.")).to_be_visible()
    expect(page.get_by_role("heading", name="Recent payments")).to_be_visible()
    screenshot(page, "receipts")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download receipt").click()
    download = download_info.value
    assert download.suggested_filename == f"alma-receipt-{payment.reference}.pdf"
    assert Path(download.path()).read_bytes().startswith(b"%PDF")
