"""Issue 11: a patient clicks "Español" on the phone page and goes through verification to the summary in Spanish.

Elements are found by their accessible labels and roles, here the Spanish ones.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import dateformat, translation
from playwright.sync_api import Page, expect

from invoices.models import Patient
from tests.browser.flows import issue_insured_invoice, latest_code, link_path_from_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_patient_switches_to_spanish_on_the_phone_page_and_sees_the_summary_in_spanish(
    live_server: Any, phone_page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    invoice = issue_insured_invoice()
    page = phone_page
    page.goto(live_server.url + link_path_from_email(invoice))
    expect(page.locator("html")).to_have_attribute("lang", "en")

    page.get_by_role("button", name="Español").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", name="Confirme que es usted", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Español")).to_have_attribute("aria-pressed", "true")
    screenshot(page, "es-phone")

    field = page.get_by_label("Número de teléfono")
    field.click()
    field.press_sequentially("(202) 555-0143")
    page.get_by_role("button", name="Continuar").click()
    expect(page.get_by_label("Código de verificación")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "es")

    page.get_by_label("Código de verificación").fill(latest_code())
    page.get_by_role("button", name="Verificar").click()
    expect(page).to_have_url(live_server.url + "/pay/invoices/")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", name="Sus facturas", level=1)).to_be_visible()
    with translation.override("es"):
        date = dateformat.format(invoice.session.date_of_service, "j b Y")
    expect(page.get_by_role("heading", name=f"Consulta del {date} · $70.00", level=2)).to_be_visible()
    expect(page.get_by_text("Usted debe $70.00")).to_be_visible()
    page.get_by_text("¿Por qué este monto?").click()
    expect(page.get_by_text("Su coseguro: 20% de $100.00 = $20.00")).to_be_visible()
    expect(page.get_by_text("Según la verificación de elegibilidad de su plan del ")).to_contain_text(
        re.compile(r"del \d{1,2} de [a-z]+ de \d{4}\.")
    )
    # The card is taken on this page (no localstripe here, so the form says Stripe.js did not load).
    expect(page.locator("#pay-button")).to_have_text("Pagar $70.00")
    assert "Your invoices" not in page.content()
    screenshot(page, "es-summary")

    # The choice made before verification became the patient's preferred language (emails, receipts).
    assert Patient.objects.get(pk=invoice.patient_id).preferred_language == "es"

    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()
