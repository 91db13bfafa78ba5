"""Issue 11: one open invoice, four screens. From the emailed link to "Payment received": phone -> code -> the
amount and the card on one page -> the result. Each screen is a document the browser loaded (a main-frame
navigation); the card check and the charge happen inside the third one."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Frame, Page, expect

from invoices.models import Invoice
from payments.models import Payment
from tests.browser.flows import TYPED_PHONE, fill_card, latest_code, submit_code, submit_phone
from tests.factories import PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices
from tests.verification.helpers import link_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Page, str], Path]


def _count_screens(page: Page) -> list[str]:
    """The path of every document the tab shows, in order (redirects land on one screen)."""
    screens: list[str] = []

    def loaded(frame: Frame) -> None:
        if frame == page.main_frame:
            screens.append(re.sub(r"^https?://[^/]+", "", frame.url))

    page.on("framenavigated", loaded)
    return screens


def _one_invoice_to_received(page: Page, live_server: Any, screenshot: Shot, *, spanish: bool = False) -> list[str]:
    [invoice] = open_invoices(PatientFactory(phone="+12025550143"), 7_000)
    screens = _count_screens(page)
    page.goto(live_server.url + link_for(invoice))
    if spanish:
        page.get_by_role("button", name="Español").click()
        screens.clear()  # the switch reloads the first screen in Spanish: still the first screen
        screens.append("/pay/<token>/ (es)")
        page.get_by_label("Número de teléfono").fill(TYPED_PHONE)
        page.get_by_role("button", name="Continuar").click()
        page.get_by_label("Código de verificación").fill(latest_code())
        page.get_by_role("button", name="Verificar").click()
    else:
        submit_phone(page, TYPED_PHONE)
        expect(page.get_by_label("Verification code")).to_be_visible()
        submit_code(page, latest_code())

    pay_label = "Pagar $70.00" if spanish else "Pay $70.00"
    pay = page.get_by_role("button", name=pay_label, exact=True)
    expect(pay).to_be_enabled()
    expect(page.get_by_role("button", name="Detalles" if spanish else "Details")).to_be_visible()
    screenshot(page, "summary-with-card-es" if spanish else "summary-with-card")
    fill_card(page, stripe_fake.GOOD_CARD)
    pay.click()
    expect(page.get_by_role("heading", name="Pago recibido" if spanish else "Payment received")).to_be_visible()
    screenshot(page, "received-es" if spanish else "received")

    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_cents == 7_000
    return screens


def test_one_open_invoice_is_paid_in_four_screens(
    live_server: Any, stripe_api: str, phone_page: Page, screenshot: Shot
) -> None:
    screens = _one_invoice_to_received(phone_page, live_server, screenshot)
    assert len(screens) == 4, screens
    assert re.fullmatch(r"/pay/[A-Za-z0-9_-]{43}/", screens[0])
    assert screens[1:3] == ["/pay/code/", "/pay/invoices/"]
    assert re.fullmatch(r"/pay/payments/\d+/", screens[3])


def test_four_screens_in_spanish(live_server: Any, stripe_api: str, phone_page: Page, screenshot: Shot) -> None:
    screens = _one_invoice_to_received(phone_page, live_server, screenshot, spanish=True)
    assert len(screens) == 4, screens


def test_several_open_invoices_keep_the_choice(live_server: Any, stripe_api: str, phone_page: Page) -> None:
    page = phone_page
    invoices = open_invoices(PatientFactory(phone="+12025550143"), 4_000, 3_000)
    page.goto(live_server.url + link_for(invoices[-1]))
    submit_phone(page, TYPED_PHONE)
    submit_code(page, latest_code())
    for name in ("Pay most recent invoice", "Pay all outstanding", "Details"):
        expect(page.get_by_role("button", name=re.compile(name))).to_be_visible()
    expect(page.locator("#card-form")).to_have_count(0)
