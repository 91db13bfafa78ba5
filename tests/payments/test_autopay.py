"""P6 and P7: autopay by practice policy, FSA/HSA/HRA cards kept out, charges after each new invoice."""

import threading
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from alma_billing.core.models import AuditEvent
from invoices import services as invoice_services
from invoices.models import Invoice, Practice, TherapySession
from payments import autopay
from payments.gateways.stripe import Card
from payments.models import AutopayAttempt, AutopayEnrollment, Payment
from tests.factories import InvoiceFactory, PatientFactory, ProviderFactory, TherapySessionFactory
from tests.payments import stripe_fake
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db


def card(**kwargs: Any) -> Card:
    return Card(
        **{
            "payment_method_id": "pm_x",
            "customer_id": "cus_x",
            "brand": "visa",
            "last4": "4242",
            "funding": "credit",
            **kwargs,
        }
    )


@pytest.mark.parametrize(
    ("kwargs", "declared", "why"),
    [
        ({}, True, "you told us"),
        ({"funding": "prepaid"}, False, "prepaid"),
        ({"iin": "48681234"}, False, "benefit card program"),
        ({"issuer": "HealthEquity Inc"}, False, "benefits administrator"),
        ({"issuer": "WEX Health / FSA"}, False, "benefits administrator"),
    ],
)
def test_p7_benefit_cards_are_recognized(kwargs: dict[str, str], declared: bool, why: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.BENEFIT_CARD_BIN_PREFIXES = ["4868"]
    reason = autopay.benefit_card_reason(card=card(**kwargs), declared=declared)
    assert reason is not None and why in reason


@pytest.mark.parametrize("kwargs", [{}, {"funding": "debit"}, {"iin": "42424242", "issuer": "Chase"}])
def test_p7_ordinary_credit_and_debit_cards_are_not_benefit_cards(kwargs: dict[str, str], settings) -> None:  # type: ignore[no-untyped-def]
    settings.BENEFIT_CARD_BIN_PREFIXES = ["4868"]
    assert autopay.benefit_card_reason(card=card(**kwargs), declared=False) is None


def practice_patient(policy: str) -> tuple[Any, Any]:
    provider = ProviderFactory(practice__autopay_policy=policy)
    patient = PatientFactory(phone="+12025550143")
    invoice = InvoiceFactory(session__patient=patient, session__provider=provider, amount_cents=7_000)
    return provider, invoice


def verified(invoice: Invoice) -> Client:
    client = Client()
    verify(client, link_for(invoice))
    return client


def enroll(client: Client, number: str = stripe_fake.GOOD_CARD, **choices: bool) -> dict[str, Any]:
    import re

    page = client.get("/pay/autopay/").content.decode()
    setup_id = re.search(r'data-setup-id="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    stripe_fake.save_card(setup_id, number)
    response = client.post(
        "/pay/autopay/enroll/", {"setup_intent": setup_id, **choices}, content_type="application/json"
    )
    return {"http": response.status_code, **response.json()}


def new_session_billed(
    provider: Any, patient: Any, django_capture_on_commit_callbacks: Any, amount: int = 9_000
) -> Invoice:
    session = TherapySessionFactory(
        patient=patient, provider=provider, billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=amount
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice_services.session_complete(session_id=session.pk, actor=SYSTEM)
    return Invoice.objects.get(session=session)


def test_p6_enrolling_shows_consent_saves_the_card_and_is_audited(stripe_api) -> None:  # type: ignore[no-untyped-def]
    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    client = verified(invoice)
    page = client.get("/pay/autopay/").content.decode()
    assert "I authorize Alma to charge the card I am adding" in page and "turn autopay off" in page

    result = enroll(client)

    assert result["status"] == "enrolled"
    enrollment = AutopayEnrollment.objects.get()
    assert enrollment.active and enrollment.card_last4 == "4242" and "I authorize" in enrollment.consent_text
    assert AuditEvent.objects.filter(action="autopay.enrolled").exists()
    summary = client.get("/pay/invoices/").content.decode()
    assert "Autopay is on with your Visa ending in 4242" in summary
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN  # enrollment alone does not charge what is already open


def test_p7_a_declared_benefit_card_is_refused_with_a_way_forward(stripe_api) -> None:  # type: ignore[no-untyped-def]
    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    client = verified(invoice)

    result = enroll(client, benefit_card=True)

    assert result["http"] == 409 and result["status"] == "refused"
    assert "can't be used for autopay" in result["message"]
    assert "pay your open invoices with it now, or enroll a different credit or debit card" in result["message"]
    assert result["setup_secret"]  # the page can take another card right away
    assert not AutopayEnrollment.objects.exists()
    assert enroll(client)["status"] == "enrolled"  # a different card works


def test_p6_practice_with_autopay_off_offers_nothing(stripe_api) -> None:  # type: ignore[no-untyped-def]
    _, invoice = practice_patient(Practice.AutopayPolicy.OFF)
    client = verified(invoice)
    assert "None of your providers' practices offer autopay" in client.get("/pay/autopay/").content.decode()
    assert "Set up autopay" not in client.get("/pay/invoices/").content.decode()


def test_p6_required_policy_asks_to_enroll_but_the_invoice_can_still_be_paid(stripe_api) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.REQUIRED)
    page = verified(invoice).get("/pay/invoices/").content.decode()
    assert f"{provider.practice.name} asks patients to enroll in autopay" in page
    assert "Enter payment details" in page


def test_p6_new_invoice_of_an_enrolled_patient_is_announced_then_charged(
    stripe_api, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    client = verified(invoice)
    enroll(client)
    mail.outbox.clear()

    new = new_session_billed(provider, invoice.patient, django_capture_on_commit_callbacks)

    new.refresh_from_db()
    assert new.status == Invoice.Status.PAID
    notice = next(m for m in mail.outbox if m.subject == "Autopay: an upcoming charge from Alma")
    assert "We'll charge $90.00 to your Visa ending in 4242" in notice.body and new.number in notice.body
    assert not [m for m in mail.outbox if m.subject == "You have a new invoice from Alma"]
    assert [m for m in mail.outbox if m.subject == "Your payment to Alma was received"]
    payment = Payment.objects.get(source=Payment.Source.AUTOPAY)
    assert payment.keep_card and payment.amount_cents == 9_000
    assert stripe_fake.client().v1.payment_methods.retrieve(payment.stripe_payment_method_id).customer  # kept
    summary = client.get("/pay/invoices/").content.decode()
    assert new.number in summary and "Succeeded" in summary  # every autopay charge is listed
    assert invoice.number not in [a.invoice.number for a in AutopayAttempt.objects.all()]


def test_p6_each_practice_gets_what_it_allows(stripe_api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    optional, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    off = ProviderFactory(practice__autopay_policy=Practice.AutopayPolicy.OFF)
    enroll(verified(invoice))
    mail.outbox.clear()

    other = new_session_billed(off, invoice.patient, django_capture_on_commit_callbacks)

    other.refresh_from_db()
    assert other.status == Invoice.Status.OPEN and not other.autopay_attempts.exists()
    assert [m.subject for m in mail.outbox] == ["You have a new invoice from Alma"]


def test_p6_a_decline_falls_back_to_the_link_then_retries_then_stops(
    stripe_api, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice), number=stripe_fake.DECLINED_AT_CHARGE)
    mail.outbox.clear()

    new = new_session_billed(provider, invoice.patient, django_capture_on_commit_callbacks)

    failed = [m for m in mail.outbox if m.subject == "Autopay didn't go through for your Alma invoice"]
    assert len(failed) == 1
    assert "declined" in failed[0].body and "/pay/" in failed[0].body and "We'll try again on" in failed[0].body
    new.refresh_from_db()
    assert new.status == Invoice.Status.OPEN
    start = timezone.now()
    for step, days in enumerate((1, 1 + 3, 1 + 3 + 7), start=1):  # each retry is scheduled from when the last ran
        with time_machine.travel(start + timedelta(days=days, hours=step)):
            assert autopay.autopay_due() == 1
    assert autopay.autopay_due() == 0
    with time_machine.travel(start + timedelta(days=60)):
        assert autopay.autopay_due() == 0  # stopped after the last retry
    attempts = list(new.autopay_attempts.order_by("number").values_list("number", "status"))
    assert attempts == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "failed")]
    assert AuditEvent.objects.filter(action="autopay.gave_up", object_id=str(new.pk)).count() == 1
    last = [m for m in mail.outbox if m.subject == "Autopay didn't go through for your Alma invoice"][-1]
    assert "We've stopped trying autopay for this invoice" in last.body
    customer = new.patient.__class__.objects.get(pk=new.patient_id).stripe_customer_id
    assert not [i for i in stripe_fake.intents_for(customer) if i.status == "succeeded"]


def test_p6_authentication_required_falls_back_with_a_reason(stripe_api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice), number=stripe_fake.THREE_D_SECURE)
    mail.outbox.clear()

    new = new_session_billed(provider, invoice.patient, django_capture_on_commit_callbacks)

    new.refresh_from_db()
    assert new.status == Invoice.Status.OPEN  # released: the patient can pay it with the link
    (failed,) = [m for m in mail.outbox if m.subject == "Autopay didn't go through for your Alma invoice"]
    assert "Your bank needs you to confirm this payment" in failed.body


def test_p6_running_the_same_attempt_twice_charges_once(stripe_api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    attempt_invoice = InvoiceFactory(session__patient=invoice.patient, session__provider=provider, amount_cents=5_000)
    attempt = AutopayAttempt.objects.create(
        invoice=attempt_invoice, enrollment=AutopayEnrollment.objects.get(), number=1, scheduled_for=timezone.now()
    )

    autopay.autopay_attempt_run(attempt_id=attempt.pk)
    AutopayAttempt.objects.filter(pk=attempt.pk).update(status=AutopayAttempt.Status.SCHEDULED)  # a stale re-run
    autopay.autopay_attempt_run(attempt_id=attempt.pk)

    assert Payment.objects.filter(source=Payment.Source.AUTOPAY).count() == 1
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert [i.amount for i in stripe_fake.intents_for(customer)] == [5_000]


def test_p6_pay_open_now_charges_what_is_open_for_autopay_practices(
    stripe_api, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    with django_capture_on_commit_callbacks(execute=True):
        enroll(verified(invoice), pay_open_now=True)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_p6_replacing_the_card_detaches_the_old_one_and_turning_off_stops_charges(
    stripe_api, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    client = verified(invoice)
    with django_capture_on_commit_callbacks(execute=True):
        enroll(client)
    first = AutopayEnrollment.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert enroll(client)["status"] == "enrolled"
    first.refresh_from_db()
    assert not first.active and AutopayEnrollment.objects.filter(ended_at__isnull=True).count() == 1
    assert not stripe_fake.client().v1.payment_methods.retrieve(first.stripe_payment_method_id).customer

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/pay/autopay/end/")
    assert not AutopayEnrollment.objects.filter(ended_at__isnull=True).exists()
    mail.outbox.clear()
    new = new_session_billed(provider, invoice.patient, django_capture_on_commit_callbacks)
    new.refresh_from_db()
    assert new.status == Invoice.Status.OPEN and [m.subject for m in mail.outbox] == [
        "You have a new invoice from Alma"
    ]


@pytest.mark.django_db(transaction=True)
def test_p6_the_same_attempt_run_concurrently_charges_once(postgres: None, stripe_api) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    attempt = AutopayAttempt.objects.create(
        invoice=invoice, enrollment=AutopayEnrollment.objects.get(), number=1, scheduled_for=timezone.now()
    )
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            autopay.autopay_attempt_run(attempt_id=attempt.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert len([i for i in stripe_fake.intents_for(customer) if i.status == "succeeded"]) == 1


def _scheduled(invoice: Invoice) -> AutopayAttempt:
    return AutopayAttempt.objects.create(
        invoice=invoice, enrollment=AutopayEnrollment.objects.get(ended_at=None), number=1, scheduled_for=timezone.now()
    )


def test_p6_a_practice_that_turns_autopay_off_stops_scheduled_charges(stripe_api) -> None:  # type: ignore[no-untyped-def]
    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    attempt = _scheduled(invoice)
    Practice.objects.filter(pk=provider.practice_id).update(autopay_policy=Practice.AutopayPolicy.OFF)

    autopay.autopay_attempt_run(attempt_id=attempt.pk)

    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == AutopayAttempt.Status.CANCELED and "no longer offers autopay" in attempt.failure_message
    assert invoice.status == Invoice.Status.OPEN and not Payment.objects.exists()


def test_p6_voiding_an_invoice_cancels_its_scheduled_charge_and_nothing_is_taken(stripe_api) -> None:  # type: ignore[no-untyped-def]
    """invoices voids through its hook; payments cancels the charge (docs/architecture.md): no card is charged."""
    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    attempt = _scheduled(invoice)
    other = _scheduled(InvoiceFactory(session__patient=invoice.patient, amount_cents=3_000))

    invoice_services.invoice_void(invoice_id=invoice.pk, reason="Paid at the front desk.", actor=SYSTEM)
    autopay.autopay_attempt_run(attempt_id=attempt.pk)

    attempt.refresh_from_db()
    other.refresh_from_db()
    assert attempt.status == AutopayAttempt.Status.CANCELED and attempt.failure_message == "Invoice voided."
    assert other.status == AutopayAttempt.Status.SCHEDULED  # another invoice's charge is untouched
    assert not Payment.objects.filter(allocations__invoice=invoice).exists()


def test_p6_enrolling_the_same_card_twice_keeps_it(stripe_api) -> None:  # type: ignore[no-untyped-def]
    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    client = verified(invoice)
    first = enroll(client)
    assert first["status"] == "enrolled"
    enrollment = AutopayEnrollment.objects.get()
    setup = stripe_fake.client().v1.setup_intents.list().data[-1]
    replay = client.post("/pay/autopay/enroll/", {"setup_intent": setup.id}, content_type="application/json")
    assert replay.json()["status"] == "enrolled"
    assert AutopayEnrollment.objects.get(ended_at=None) == enrollment
    assert stripe_fake.client().v1.payment_methods.retrieve(enrollment.stripe_payment_method_id).customer


def test_p6_a_charge_settled_by_a_webhook_after_its_worker_died_is_recorded_as_succeeded(stripe_api) -> None:  # type: ignore[no-untyped-def]
    from payments import services

    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    attempt = _scheduled(invoice)
    enrollment = attempt.enrollment
    card = Card(
        payment_method_id=enrollment.stripe_payment_method_id,
        customer_id="",
        brand="visa",
        last4="4242",
        funding="credit",
    )
    payment = services.payment_start(
        patient_id=invoice.patient_id,
        invoice_ids=[invoice.pk],
        expected_amount_cents=invoice.amount_cents,
        attempt_key=f"autopay-{invoice.pk}-1",
        card=card,
        actor=SYSTEM,
        source=Payment.Source.AUTOPAY,
        keep_card=True,
    )
    AutopayAttempt.objects.filter(pk=attempt.pk).update(payment=payment)
    services.payment_charge(payment_id=payment.pk)  # the worker "dies" here; the settlement ran meanwhile

    autopay.autopay_attempt_run(attempt_id=attempt.pk)  # the redelivered task

    attempt.refresh_from_db()
    assert attempt.status == AutopayAttempt.Status.SUCCEEDED
    assert Payment.objects.count() == 1


def test_p6_one_failing_autopay_attempt_does_not_stop_the_others(stripe_api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from alma_billing.core.errors import TransportError

    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    enroll(verified(invoice))
    second = InvoiceFactory(session__patient=invoice.patient, session__provider=provider, amount_cents=5_000)
    broken = _scheduled(invoice)
    _scheduled(second)
    real_run = autopay.autopay_attempt_run

    def run(*, attempt_id: int) -> AutopayAttempt:
        if attempt_id == broken.pk:
            raise TransportError("Stripe is unreachable", permanent=False)
        return real_run(attempt_id=attempt_id)

    monkeypatch.setattr("payments.autopay.charges.autopay_attempt_run", run)
    assert autopay.autopay_due() == 1

    second.refresh_from_db()
    broken.refresh_from_db()
    assert second.status == Invoice.Status.PAID
    assert broken.status == AutopayAttempt.Status.SCHEDULED  # due again at the next sweep


@pytest.mark.django_db(transaction=True)
def test_p6_turning_on_autopay_with_pay_now_while_a_pay_click_runs_fails_neither_and_charges_once(  # type: ignore[no-untyped-def]
    postgres: None, stripe_api
) -> None:
    """Both lock the patient first, then the invoices (they used to deadlock: one of them answered 500)."""
    import re

    from tests.payments.conftest import card_page, checkout

    _, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    tab = verified(invoice)
    fields = card_page(tab, checkout(tab, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    other_tab = verified(invoice)
    setup_id = re.search(r'data-setup-id="([^"]+)"', other_tab.get("/pay/autopay/").content.decode()).group(1)  # type: ignore[union-attr]
    stripe_fake.save_card(setup_id, stripe_fake.GOOD_CARD)
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def pay() -> None:
        try:
            barrier.wait()
            body = {
                "setup_intent": fields["setup-id"],
                "attempt_key": fields["attempt-key"],
                "checkout": fields["checkout"],
            }
            answers.append(tab.post("/pay/card/confirm/", body, content_type="application/json").status_code)
        finally:
            connection.close()

    def turn_on_autopay() -> None:
        try:
            barrier.wait()
            body = {"setup_intent": setup_id, "pay_open_now": True}
            answers.append(other_tab.post("/pay/autopay/enroll/", body, content_type="application/json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay), threading.Thread(target=turn_on_autopay)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 2 and all(code < 500 for code in answers), answers
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert len([i for i in stripe_fake.intents_for(customer) if i.status == "succeeded"]) == 1
