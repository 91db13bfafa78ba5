"""P6 and P7 in a real browser: enrolling a card in autopay on a phone, the charge after the next session, an
FSA/HSA/HRA card refused with a way forward, a decline that falls back to the emailed link, and turning autopay off.

The new sessions are completed in the test process through invoices.services.session_complete: the test is
transactional, so its on_commit callbacks fire, and Celery runs eagerly, so the invoice is issued, announced and
charged (or not) before session_complete returns. The browser then sees what the patient would see.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import BrowserContext, Locator, Page, Request, expect

from alma_billing.core.audit import SYSTEM
from alma_billing.core.models import AuditEvent
from invoices import services as invoice_services
from invoices.models import Invoice, Patient, Practice, TherapySession
from payments.models import AutopayAttempt, AutopayEnrollment, Payment
from tests.browser.flows import PAY_PATH, expect_received, fill_card, pay_on_page, verify_on_page
from tests.factories import PatientFactory, ProviderFactory, TherapySessionFactory
from tests.payments import stripe_fake

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Page, str], Path]
NEW_INVOICE = "You have a new invoice from Alma"
NOTICE = "Autopay: an upcoming charge from Alma"
RECEIPT = "Your payment to Alma was received"
FAILED = "Autopay didn't go through for your Alma invoice"
TURN_ON = "I agree, turn on autopay"
BENEFIT_BOX = "This is an FSA, HSA or HRA card"
ON_4242 = "Autopay is on with your Visa ending in 4242."


# --- set-up in the test process ----------------------------------------------------------------------------------


def _bill(provider: Any, patient: Any, amount_cents: int) -> Invoice:
    """A self-pay session completed through the service; everything after the commit runs before this returns."""
    session = TherapySessionFactory(
        patient=patient,
        provider=provider,
        billing_type=TherapySession.BillingType.SELF_PAY,
        self_pay_rate_cents=amount_cents,
    )
    invoice_services.session_complete(session_id=session.pk, actor=SYSTEM)
    invoice = Invoice.objects.select_related("patient").get(session=session)
    assert invoice.amount_cents == amount_cents
    return invoice


def _optional_practice_patient() -> tuple[Any, Invoice]:
    """A patient of a practice whose autopay is optional, with one open $70.00 invoice emailed with its link."""
    provider = ProviderFactory(practice__autopay_policy=Practice.AutopayPolicy.OPTIONAL)
    invoice = _bill(provider, PatientFactory(phone="+12025550143"), 7_000)
    assert _subjects() == [NEW_INVOICE]
    return provider, invoice


def _subjects() -> list[str]:
    return [str(m.subject) for m in mail.outbox]


def _link_in(subject: str) -> str:
    [message] = [m for m in mail.outbox if m.subject == subject]
    match = PAY_PATH.search(str(message.body))
    assert match, message.body
    return match.group(0)


def _status(invoice: Invoice) -> str:
    return Invoice.objects.values_list("status", flat=True).get(pk=invoice.pk)


def _customer(invoice: Invoice) -> str:
    customer_id = Patient.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert customer_id
    return customer_id


# --- steps in the browser ----------------------------------------------------------------------------------------


def _autopay_section(page: Page) -> Locator:
    """The summary's Autopay card (the box under the "Autopay" heading)."""
    return page.locator("h2", has_text=re.compile(r"^Autopay$")).locator("xpath=following-sibling::div[1]")


def _open_autopay_page(page: Page, link: str) -> None:
    page.get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name="Autopay", level=1)).to_be_visible()


def _turn_on(page: Page, number: str) -> None:
    fill_card(page, number)
    page.get_by_role("button", name=TURN_ON).click()


def _expect_on(page: Page, last4: str = "4242") -> None:
    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()
    expect(_autopay_section(page)).to_contain_text(f"Autopay is on with your Visa ending in {last4}.")


def _enroll(page: Page, number: str = stripe_fake.GOOD_CARD) -> None:
    _open_autopay_page(page, "Set up autopay")
    _turn_on(page, number)
    _expect_on(page, number[-4:])


def _charge_row(page: Page, invoice: Invoice) -> Locator:
    table = page.get_by_role("table", name="Automatic charges")
    return table.get_by_role("row").filter(has_text=invoice.number)


# --- tests -------------------------------------------------------------------------------------------------------


def test_p6_enroll_then_a_new_session_is_charged_automatically(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    provider, first = _optional_practice_patient()
    page = phone_page
    verify_on_page(page, live_server.url + _link_in(NEW_INVOICE))
    expect(_autopay_section(page)).to_contain_text("Autopay is off.")
    screenshot(page, "1-summary")

    _open_autopay_page(page, "Set up autopay")
    consent = page.get_by_text("I authorize Alma to charge the card I am adding")
    expect(consent).to_be_visible()
    expect(consent).to_contain_text(provider.practice.name)
    expect(consent).to_contain_text("on the day the invoice is issued")
    expect(consent).to_contain_text("turning it off stops future charges")
    expect(page.get_by_text("FSA, HSA and HRA cards can pay invoices but can't be used for autopay.")).to_be_visible()
    expect(page.get_by_label(BENEFIT_BOX)).not_to_be_checked()
    expect(page.get_by_label("Also pay my open invoices now with this card")).not_to_be_checked()
    screenshot(page, "2-autopay-consent")
    _turn_on(page, stripe_fake.GOOD_CARD)

    _expect_on(page)
    expect(page.get_by_role("status").filter(has_text=ON_4242)).to_be_visible()  # the flash message
    expect(page.get_by_text("You owe $70.00")).to_be_visible()  # enrolling alone charges nothing already open
    screenshot(page, "3-enrolled")
    enrollment = AutopayEnrollment.objects.get(ended_at__isnull=True)
    assert (enrollment.card_brand, enrollment.card_last4) == ("visa", "4242")
    assert enrollment.consent_text.startswith("I authorize Alma") and provider.practice.name in enrollment.consent_text
    assert _status(first) == Invoice.Status.OPEN

    mail.outbox.clear()
    new = _bill(provider, first.patient, 9_000)

    assert _status(new) == Invoice.Status.PAID
    assert NEW_INVOICE not in _subjects()
    [notice] = [m for m in mail.outbox if m.subject == NOTICE]
    assert "We'll charge $90.00 to your Visa ending in 4242" in notice.body and new.number in notice.body
    [receipt] = [m for m in mail.outbox if m.subject == RECEIPT]
    assert receipt.to == [first.patient.email]
    payment = Payment.objects.get(source=Payment.Source.AUTOPAY)
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_cents == 9_000
    [intent] = [i for i in stripe_fake.intents_for(_customer(new)) if i.status == "succeeded"]
    assert intent.id == payment.stripe_payment_intent_id and intent.amount == 9_000

    page.reload()
    row = _charge_row(page, new)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("$90.00")
    expect(row).to_contain_text("Succeeded")
    expect(page.get_by_role("table", name="Automatic charges").get_by_role("row")).to_have_count(2)  # header + 1
    expect(page.get_by_text("You owe $70.00")).to_be_visible()  # the older invoice is still the patient's to pay
    expect(page.get_by_role("link", name="Download receipt")).to_be_visible()
    screenshot(page, "4-charged")
    assert _status(first) == Invoice.Status.OPEN


def test_p7_benefit_card_is_refused_with_a_way_forward(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    _, first = _optional_practice_patient()
    page = phone_page
    verify_on_page(page, live_server.url + _link_in(NEW_INVOICE))
    _open_autopay_page(page, "Set up autopay")
    enrolls: list[Request] = []
    page.on("request", lambda request: enrolls.append(request) if "/pay/autopay/enroll/" in request.url else None)

    page.get_by_label(BENEFIT_BOX).check()
    _turn_on(page, stripe_fake.GOOD_CARD)

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("can't be used for autopay")
    expect(alert).to_contain_text("you told us it is one")
    expect(alert).to_contain_text("pay your open invoices with it now, or enroll a different credit or debit card")
    button = page.get_by_role("button", name=TURN_ON)
    expect(button).to_be_enabled()
    expect(page).to_have_url(live_server.url + "/pay/autopay/")
    screenshot(page, "1-refused")
    assert not AutopayEnrollment.objects.exists()
    assert AuditEvent.objects.filter(action="autopay.benefit_card_refused").count() == 1

    page.get_by_label(BENEFIT_BOX).uncheck()
    _turn_on(page, stripe_fake.GOOD_CARD)

    _expect_on(page)
    screenshot(page, "2-enrolled-with-another-card")
    assert [r.post_data_json["benefit_card"] for r in enrolls] == [True, False]  # type: ignore[index]
    first_setup, second_setup = (r.post_data_json["setup_intent"] for r in enrolls)  # type: ignore[index]
    assert first_setup != second_setup  # the page used the fresh SetupIntent the server sent back
    enrollment = AutopayEnrollment.objects.get()
    assert enrollment.active and enrollment.card_last4 == "4242"
    assert _status(first) == Invoice.Status.OPEN


def test_p6_decline_falls_back_to_the_emailed_link(
    live_server: Any,
    stripe_api: str,
    phone_page: Page,
    new_phone_context: Callable[..., BrowserContext],
    browser_log: list[str],
    screenshot: Shot,
) -> None:
    provider, first = _optional_practice_patient()
    page = phone_page
    verify_on_page(page, live_server.url + _link_in(NEW_INVOICE))
    _enroll(page, stripe_fake.DECLINED_AT_CHARGE)  # the card saves fine; the bank declines it when charged

    mail.outbox.clear()
    new = _bill(provider, first.patient, 9_000)

    assert _status(new) == Invoice.Status.OPEN
    assert NEW_INVOICE not in _subjects() and RECEIPT not in _subjects()
    [failed] = [m for m in mail.outbox if m.subject == FAILED]
    assert failed.to == [first.patient.email]
    assert new.number in failed.body and "$90.00" in failed.body and "Visa ending in 0341" in failed.body
    assert "declined" in failed.body and "We'll try again on" in failed.body
    assert Payment.objects.get(source=Payment.Source.AUTOPAY).status == Payment.Status.FAILED
    attempts = list(new.autopay_attempts.order_by("number").values_list("number", "status"))
    assert attempts == [(1, AutopayAttempt.Status.FAILED), (2, AutopayAttempt.Status.SCHEDULED)]

    # Later, on the phone, the patient opens the link in that email.
    later = new_phone_context().new_page()
    verify_on_page(later, live_server.url + _link_in(FAILED))
    expect(later.get_by_text("You have 2 unpaid invoices totaling $160.00.")).to_be_visible()
    rows = _charge_row(later, new)
    expect(rows).to_have_count(2)  # the declined charge, and the retry the email promised
    expect(rows.filter(has_text="Failed")).to_contain_text("declined")
    expect(rows.filter(has_text="Scheduled")).to_have_count(1)
    screenshot(later, "1-summary-after-decline")
    later.get_by_role("button", name="Pay most recent invoice").click()
    pay_on_page(later, "$90.00")
    expect_received(later)
    expect(later.get_by_text(new.number)).to_be_visible()
    expect(later.get_by_text("ending in 4242")).to_be_visible()
    screenshot(later, "2-paid-by-hand")
    later.get_by_role("link", name="Back to your invoices").click()
    expect(later.get_by_text("You owe $70.00")).to_be_visible()
    screenshot(later, "3-summary-after-paying")
    # Paid by hand: the retry that was scheduled is gone, so nobody fears a second charge.
    expect(_charge_row(later, new).filter(has_text="Scheduled")).to_have_count(0)

    assert _status(new) == Invoice.Status.PAID
    assert _status(first) == Invoice.Status.OPEN
    paid = Payment.objects.get(status=Payment.Status.SUCCEEDED)
    assert paid.source != Payment.Source.AUTOPAY and paid.card_last4 == "4242" and paid.amount_cents == 9_000
    assert [i.amount for i in stripe_fake.intents_for(_customer(new)) if i.status == "succeeded"] == [9_000]


def test_p6_turn_off_autopay(
    live_server: Any, stripe_api: str, phone_page: Page, browser_log: list[str], screenshot: Shot
) -> None:
    provider, first = _optional_practice_patient()
    page = phone_page
    verify_on_page(page, live_server.url + _link_in(NEW_INVOICE))
    _enroll(page)
    card = AutopayEnrollment.objects.get().stripe_payment_method_id

    _open_autopay_page(page, "Change the card or turn autopay off")
    expect(page.get_by_role("status").filter(has_text="Autopay is on")).to_contain_text("Visa ending in 4242")
    expect(page.get_by_role("button", name="Replace card")).to_be_visible()
    screenshot(page, "1-autopay-on")
    page.get_by_role("button", name="Turn off autopay").click()

    expect(page.get_by_role("heading", name="Your invoices", level=1)).to_be_visible()
    expect(page.get_by_text("Autopay is off. Nothing more will be charged automatically.")).to_be_visible()
    expect(_autopay_section(page)).to_contain_text("Autopay is off.")
    expect(_autopay_section(page).get_by_role("link", name="Set up autopay")).to_be_visible()
    expect(page.get_by_text("Autopay is on")).to_have_count(0)
    screenshot(page, "2-autopay-off")
    assert not AutopayEnrollment.objects.filter(ended_at__isnull=True).exists()
    assert not stripe_fake.client().v1.payment_methods.retrieve(card).customer  # the card was let go

    mail.outbox.clear()
    new = _bill(provider, first.patient, 9_000)

    assert _status(new) == Invoice.Status.OPEN
    assert _subjects() == [NEW_INVOICE]
    assert PAY_PATH.search(str(mail.outbox[0].body))
    assert not new.autopay_attempts.exists()
    assert not Payment.objects.exists()
    assert stripe_fake.intents_for(_customer(new)) == []
    page.reload()
    expect(page.get_by_text("You have 2 unpaid invoices totaling $160.00.")).to_be_visible()
