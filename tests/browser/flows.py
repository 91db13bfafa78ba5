"""Browser steps the tests share: an invoice issued and emailed, the texted code, phone and code entry, the card
element, paying, and the result page."""

import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import mail
from playwright.sync_api import Locator, Page, expect

from alma_billing.core.audit import SYSTEM
from invoices import services as invoice_services
from invoices.models import Invoice
from tests.factories import PatientFactory, insured_session
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices
from tests.verification.helpers import link_for

PROFILE_PHONE = "+12025550143"  # PatientFactory's number
TYPED_PHONE = "(202) 555-0143"
PAY_PATH = re.compile(r"/pay/[A-Za-z0-9_-]{43}/")


def issue_insured_invoice() -> Invoice:
    """A session completed through the service: $150 allowed, $50 deductible left, 20% coinsurance = $70.00."""
    session = insured_session(plan_deductible_remaining_cents=5_000, plan_coinsurance_bp=2_000)
    invoice_services.session_complete(session_id=session.pk, actor=SYSTEM)  # commits; the task runs eagerly
    invoice = Invoice.objects.select_related("patient", "provider", "session").get(session=session)
    assert invoice.amount_cents == 7_000
    return invoice


def link_path_from_email(invoice: Invoice) -> str:
    [message] = [m for m in mail.outbox if m.to == [invoice.patient.email]]
    match = PAY_PATH.search(str(message.body))
    assert match, message.body
    return match.group(0)


def sms_files() -> list[Path]:
    folder = Path(settings.OUTBOX_DIR)
    return sorted(folder.glob("*.sms.json")) if folder.exists() else []  # names start with time_ns


def latest_code() -> str:
    files = sms_files()
    assert files, f"no SMS written to {settings.OUTBOX_DIR}"
    sms = json.loads(files[-1].read_text())
    assert sms["to"] == PROFILE_PHONE
    match = re.search(r"\b(\d{6})\b", sms["body"])
    assert match, sms["body"]
    return match.group(1)


def submit_phone(page: Page, phone: str) -> None:
    field = page.get_by_label("Phone number")
    field.click()
    field.press_sequentially(phone)
    page.get_by_role("button", name="Continue").click()


def submit_code(page: Page, code: str) -> None:
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify").click()


def verify_on_page(page: Page, url: str) -> None:
    """From the emailed link through phone and code to the summary."""
    page.goto(url)
    submit_phone(page, TYPED_PHONE)
    expect(page.get_by_label("Verification code")).to_be_visible()
    submit_code(page, latest_code())
    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()


def open_invoices_page(page: Page, live_server: Any, *amounts: int) -> list[Invoice]:
    """Open invoices (oldest first) for a patient with the profile phone, and a verified page on their summary."""
    invoices = open_invoices(PatientFactory(phone="+12025550143"), *amounts)
    verify_on_page(page, live_server.url + link_for(invoices[-1]))
    return invoices


def card_page_for_one_invoice(page: Page, live_server: Any) -> Invoice:
    """Verified, one $70.00 invoice: the summary itself takes the card (P10, issue 11's four screens)."""
    [invoice] = open_invoices_page(page, live_server, 7_000)
    return invoice


def fill_card(page: Page, number: str) -> None:
    """The fake Stripe.js card element: five plain inputs named by their placeholders."""
    card = page.locator("#card-element")
    for placeholder, value in (
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "10001"),
    ):
        card.get_by_placeholder(placeholder, exact=True).fill(value)


def pay_button(page: Page, amount: str) -> Locator:
    button = page.get_by_role("button", name=f"Pay {amount}", exact=True)
    expect(button).to_be_enabled()
    return button


def pay_on_page(page: Page, amount: str, number: str = stripe_fake.GOOD_CARD) -> None:
    """On the card page, or on the summary of one open invoice (which takes the card itself)."""
    expect(page.get_by_role("button", name=f"Pay {amount}", exact=True)).to_be_visible()
    fill_card(page, number)
    pay_button(page, amount).click()


def expect_received(page: Page) -> None:
    expect(page.get_by_role("heading", name="Payment received", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Download receipt")).to_be_visible()
