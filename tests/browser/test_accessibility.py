"""Issue 11: axe-core on every patient page and state, at phone and desktop sizes, in English and Spanish; and the
focus ring's contrast against the page (WCAG 1.4.11).

axe-core comes from node_modules (package-lock.json; `make install` runs `npm ci`) and is injected by Playwright.
Each test reaches one state the way a patient would (or, for the 400/403/500 pages, serves the page Django's handler
renders), then runs axe at 390x844 and at 1280x800: 0 violations of the WCAG 2.x A/AA rules. Steps find elements by
name attributes and ids, not by wording, so the same steps run in both languages (the language cookie is set first,
as the "Español" switch does). docs/accessibility.md says how to read a failure.
"""

import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from playwright.sync_api import Browser, Page, Route, ViewportSize, expect

from alma_billing.core import error_pages
from invoices.models import Invoice, Practice
from tests.browser.flows import TYPED_PHONE, fill_card, latest_code
from tests.factories import InvoiceFactory, PatientFactory, ProviderFactory
from tests.needs import need
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices
from verification.models import PayLink
from verification.services import pay_link_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SIZES: dict[str, ViewportSize] = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
WRONG_PHONE = "(202) 555-0199"


@pytest.fixture(autouse=True)
def _support_contact(settings: Any) -> None:
    """The footer's support contact (links) is on every page these tests check."""
    settings.SUPPORT_EMAIL = "billing-help@example.com"
    settings.SUPPORT_PHONE = "(800) 555-0100"


@pytest.fixture(scope="session")
def axe_js() -> Path:
    need("axe-core", AXE_JS.exists(), f"{AXE_JS.relative_to(REPO_ROOT)} is missing (run `npm ci`; make install does)")
    return AXE_JS


def axe_violations(page: Page, axe_js: Path) -> list[str]:
    """axe-core's WCAG 2.x A/AA violations on the page as it is now, one readable line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_js))
    violations = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)})))",
        WCAG_A_AA,
    )
    return [f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in violations]


# --- how a patient reaches each state ----------------------------------------------------------------------------


def _patient_invoices(*amounts: int) -> list[Invoice]:
    return open_invoices(PatientFactory(phone="+12025550143"), *amounts)


def _link(invoice: Invoice) -> str:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    return f"/pay/{token}/"


def _type_phone(page: Page, phone: str) -> None:
    page.locator("#id_phone").fill(phone)
    page.locator("form button[type=submit].primary").click()


def _to_code_page(page: Page, url: str, invoice: Invoice) -> None:
    page.goto(url + _link(invoice))
    _type_phone(page, TYPED_PHONE)
    expect(page.locator("#id_code")).to_be_visible()


def _verified(page: Page, url: str, invoice: Invoice) -> None:
    _to_code_page(page, url, invoice)
    page.locator("#id_code").fill(latest_code())
    page.locator("form[action='/pay/code/'] button[type=submit]").click()
    expect(page).to_have_url(url + "/pay/invoices/")


def _card_page(page: Page, url: str) -> None:
    """The card page of "Pay most recent invoice" (one open invoice takes the card on the summary itself)."""
    invoice = _patient_invoices(4_000, 7_000)[-1]
    _verified(page, url, invoice)
    page.locator("form[action='/pay/checkout/'] button[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/pay/card/[0-9a-f]{16}/$"))
    expect(page.locator("#card-element input").first).to_be_visible()


def landing(page: Page, url: str) -> None:
    page.goto(url + _link(_patient_invoices(7_000)[0]))
    expect(page.locator("#id_phone")).to_be_visible()


def landing_after_language_switch(page: Page, url: str) -> None:
    """The switch pressed on the page: the same page again, in the other language."""
    page.goto(url + _link(_patient_invoices(7_000)[0]))
    other = "en" if page.locator("html").get_attribute("lang") == "es" else "es"
    page.locator(f"form.language button[value={other}]").click()
    expect(page.locator("html")).to_have_attribute("lang", other)


def phone_wrong(page: Page, url: str) -> None:
    page.goto(url + _link(_patient_invoices(7_000)[0]))
    _type_phone(page, WRONG_PHONE)
    expect(page.get_by_role("alert").first).to_be_visible()


def phone_locked(page: Page, url: str) -> None:
    page.goto(url + _link(_patient_invoices(7_000)[0]))
    for _ in range(settings.VERIFY_MAX_PHONE_TRIES):
        if not page.locator("#id_phone").count():
            break
        _type_phone(page, WRONG_PHONE)
    expect(page.get_by_role("alert").first).to_be_visible()  # the lock message, on the attempt that locks


def code(page: Page, url: str) -> None:
    _to_code_page(page, url, _patient_invoices(7_000)[0])


def code_wrong(page: Page, url: str) -> None:
    _to_code_page(page, url, _patient_invoices(7_000)[0])
    wrong = "000000" if latest_code() != "000000" else "111111"
    page.locator("#id_code").fill(wrong)
    page.locator("form[action='/pay/code/'] button[type=submit]").click()
    expect(page.get_by_role("alert").first).to_be_visible()


def summary_one_invoice(page: Page, url: str) -> None:
    _verified(page, url, _patient_invoices(7_000)[0])


def summary_several_invoices(page: Page, url: str) -> None:
    _verified(page, url, _patient_invoices(4_000, 5_500, 7_000)[-1])


def details(page: Page, url: str) -> None:
    _verified(page, url, _patient_invoices(4_000, 5_500, 7_000)[-1])
    page.locator("form[action='/pay/invoices/details/'] button").click()
    expect(page).to_have_url(re.compile(r"/pay/invoices/details/\??$"))


def invoice_detail(page: Page, url: str) -> None:
    invoices = _patient_invoices(4_000, 7_000)
    _verified(page, url, invoices[-1])
    page.goto(f"{url}/pay/invoices/{invoices[0].number}/")
    expect(page.locator("h1")).to_contain_text(invoices[0].number)


def invoice_not_found(page: Page, url: str) -> None:
    """Another patient's invoice number: the same answer as a number that does not exist."""
    other = InvoiceFactory(amount_cents=3_000)
    _verified(page, url, _patient_invoices(7_000)[0])
    page.goto(f"{url}/pay/invoices/{other.number}/")
    expect(page.locator("h1")).to_be_visible()


def card_page(page: Page, url: str) -> None:
    _card_page(page, url)


def card_declined_at_check(page: Page, url: str) -> None:
    _card_page(page, url)
    fill_card(page, stripe_fake.DECLINED_AT_SETUP)
    page.locator("#pay-button").click()
    expect(page.locator("#card-errors")).not_to_be_empty()
    expect(page.locator("#pay-button")).to_be_enabled()


def card_declined_at_charge(page: Page, url: str) -> None:
    _card_page(page, url)
    fill_card(page, stripe_fake.DECLINED_AT_CHARGE)
    page.locator("#pay-button").click()
    expect(page).to_have_url(re.compile(r"/pay/payments/\d+/$"))
    expect(page.get_by_role("alert").first).to_be_visible()


def confirming(page: Page, url: str) -> None:
    """The card page lost the answer to Pay: "We're confirming your payment"."""
    _card_page(page, url)
    attempt_url = page.locator("#card-form").get_attribute("data-attempt-url")
    page.goto(url + str(attempt_url))
    expect(page.locator("h1")).to_be_visible()


def payment_received(page: Page, url: str) -> None:
    _card_page(page, url)
    fill_card(page, stripe_fake.GOOD_CARD)
    page.locator("#pay-button").click()
    expect(page).to_have_url(re.compile(r"/pay/payments/\d+/$"))
    expect(page.locator("a[href$='receipt.pdf']").first).to_be_visible()


def autopay_page(page: Page, url: str) -> None:
    provider = ProviderFactory(practice__autopay_policy=Practice.AutopayPolicy.OPTIONAL)
    patient = PatientFactory(phone="+12025550143")
    _verified(page, url, InvoiceFactory(session__patient=patient, session__provider=provider, amount_cents=7_000))
    page.goto(url + "/pay/autopay/")
    expect(page.locator("#card-element input").first).to_be_visible()


def link_not_recognized(page: Page, url: str) -> None:
    response = page.goto(url + "/pay/" + "A" * 43 + "/")
    assert response is not None and response.status == 404


def link_expired(page: Page, url: str) -> None:
    invoice = _patient_invoices(7_000)[0]
    path = _link(invoice)
    PayLink.objects.filter(invoice=invoice).update(expires_at=timezone.now() - datetime.timedelta(days=1))
    response = page.goto(url + path)
    assert response is not None and response.status == 410


def page_not_found(page: Page, url: str) -> None:
    response = page.goto(url + "/pay/invoices/details/nothing/here/")
    assert response is not None and response.status == 404


def receipts_request(page: Page, url: str) -> None:
    """The public "receipts later" page (issue 11), where the branch that adds it is merged."""
    page.goto(url + reverse("pay-receipts"))
    expect(page.locator("#id_email")).to_be_visible()


def receipts_requested(page: Page, url: str) -> None:
    """The same answer whether or not the address is on file."""
    page.goto(url + reverse("pay-receipts"))
    page.locator("#id_email").fill("nobody@example.com")
    page.locator("form button[type=submit].primary").click()
    expect(page.get_by_role("status").first).to_be_visible()


def _receipts_page_exists() -> bool:
    try:
        reverse("pay-receipts")
    except NoReverseMatch:
        return False
    return True


def _handler_page(handler: Callable[..., Any], path: str, status: int) -> Callable[[Page, str], None]:
    """A page Django's error handler renders, served at a live-server address (its CSS loads from the live server):
    the handlers are what the site answers with when a request is malformed, forbidden or fails."""

    def reach(page: Page, url: str) -> None:
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        language = cookies.get(settings.LANGUAGE_COOKIE_NAME, settings.LANGUAGE_CODE)

        def fulfill(route: Route) -> None:
            request = RequestFactory().get(path)
            with translation.override(language):
                if handler is error_pages.server_error:
                    response = handler(request)
                else:
                    response = handler(request, Exception("for the test"))
            route.fulfill(status=response.status_code, body=response.content, content_type=response["Content-Type"])

        page.route(url + path, fulfill)
        response = page.goto(url + path)
        assert response is not None and response.status == status
        expect(page.locator("h1")).to_be_visible()

    reach.__name__ = handler.__name__
    return reach


STATES: list[Callable[[Page, str], None]] = [
    landing,
    landing_after_language_switch,
    phone_wrong,
    phone_locked,
    code,
    code_wrong,
    summary_one_invoice,
    summary_several_invoices,
    details,
    invoice_detail,
    invoice_not_found,
    card_page,
    card_declined_at_check,
    card_declined_at_charge,
    confirming,
    payment_received,
    autopay_page,
    link_not_recognized,
    link_expired,
    page_not_found,
    _handler_page(error_pages.bad_request, "/pay/bad-request-page/", 400),
    _handler_page(error_pages.permission_denied, "/pay/forbidden-page/", 403),
    _handler_page(error_pages.server_error, "/pay/server-error-page/", 500),
    *([receipts_request, receipts_requested] if _receipts_page_exists() else []),
]


@pytest.mark.parametrize("reach", STATES, ids=[state.__name__ for state in STATES])
def test_issue11_no_axe_violations_in_english_and_spanish_at_phone_and_desktop_sizes(
    reach: Callable[[Page, str], None],
    live_server: Any,
    stripe_api: str,
    browser: Browser,
    axe_js: Path,
    screenshot: Any,
) -> None:
    # Both languages in one test: the state is reached twice (fresh data, fresh cookies), the database flushed once.
    found: dict[str, list[str]] = {}
    for language in ("en", "es"):
        context = browser.new_context(
            viewport=SIZES["phone"], bypass_csp=True, locale="es-US" if language == "es" else "en-US"
        )
        context.set_default_timeout(10_000)
        context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_server.url}])
        try:
            page = context.new_page()
            reach(page, live_server.url)
            shown = ("en" if language == "es" else "es") if reach is landing_after_language_switch else language
            expect(page.locator("html")).to_have_attribute("lang", shown)
            for size_name, size in SIZES.items():
                page.set_viewport_size(size)
                violations = axe_violations(page, axe_js)
                if violations:
                    found[f"{shown} {size_name} {page.url}"] = violations
                    screenshot(page, f"{shown}-{size_name}")
        finally:
            context.close()
    assert found == {}, "\n".join(f"{where}:\n  " + "\n  ".join(lines) for where, lines in found.items())


# --- the focus ring ----------------------------------------------------------------------------------------------

CONTRAST_JS = """el => {
  const rgb = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); return m ? m[1].split(',').map(Number) : null; };
  const channel = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  // What the ring is drawn on: the nearest ancestor with an opaque background (the ring sits outside the element).
  let node = el.parentElement, bg = null;
  while (node) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c && (c.length < 4 || c[3] === 1)) { bg = c; break; }
    node = node.parentElement;
  }
  bg = bg || [255, 255, 255];
  const style = getComputedStyle(el);
  const ring = rgb(style.outlineColor);
  const [hi, lo] = [lum(ring), lum(bg)].sort((a, b) => b - a);
  return {ratio: (hi + 0.05) / (lo + 0.05), style: style.outlineStyle, width: parseFloat(style.outlineWidth),
          ring: style.outlineColor, background: 'rgb(' + bg.slice(0, 3).join(', ') + ')'};
}"""


def test_issue11_the_focus_ring_is_at_least_3_to_1_against_the_page(
    live_server: Any, stripe_api: str, browser: Browser
) -> None:
    """A keyboard user tabs to a link, a button and a field: each ring is visible (WCAG 1.4.11 non-text contrast)."""
    context = browser.new_context(viewport=SIZES["phone"])
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(live_server.url + _link(_patient_invoices(7_000)[0]))
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(12):  # Tab through the page, as a keyboard user does (focus-visible applies)
            page.keyboard.press("Tab")
            tag = page.evaluate("document.activeElement.tagName.toLowerCase()")
            if tag in ("a", "button", "input") and tag not in seen:
                seen[tag] = page.evaluate(CONTRAST_JS, page.evaluate_handle("document.activeElement"))
        assert set(seen) == {"a", "button", "input"}, seen
        for tag, ring in seen.items():
            assert ring["style"] != "none" and ring["width"] >= 2, (tag, ring)
            assert ring["ratio"] >= 3, f"focus ring on <{tag}> is {ring['ratio']:.2f}:1 against the page: {ring}"
    finally:
        context.close()
