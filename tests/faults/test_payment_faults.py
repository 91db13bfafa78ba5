"""Issue 9 fault tests: Redis, Stripe and the checkout under failure, with exact counts afterwards.

A private redis-server is started and killed mid-flow (never the machine's own on 6379); Stripe is localstripe
behind a proxy that holds requests past the call budget. `pytest -m "not faults"` skips these locally; .ci/run
runs them all.
"""

import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from invoices.models import Invoice, TherapySession
from invoices.tasks import invoices_sweep
from payments import services
from payments.models import CardToDetach, Payment
from payments.reconcile import payments_reconcile
from tests.factories import insured_session
from tests.faults.redis_server import PrivateRedis
from tests.integration.test_autopay_worker import StripeProxy
from tests.payments import stripe_fake
from tests.payments.conftest import card_page, checkout, confirm, open_invoices, pay, verified_client
from tests.staff import staff_login

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

RECEIPT = "Your payment to Alma was received"


def age_everything(minutes: int = 30) -> None:
    """What the sweeps see after time passed (they leave fresh work to the tasks)."""
    past = timezone.now() - timedelta(minutes=minutes)
    Payment.objects.update(created_at=past)
    Payment.objects.exclude(succeeded_at=None).update(succeeded_at=past)
    CardToDetach.objects.update(created_at=past)


def receipts() -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.subject == RECEIPT]


def test_redis_down_a_patient_who_paid_reads_payment_received_and_gets_one_receipt_when_it_is_back(  # type: ignore[no-untyped-def]
    broker: PrivateRedis, stripe_api: str, patient, caplog
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    broker.stop()

    with caplog.at_level(logging.WARNING, logger="alma_billing.core.queue"):
        result = pay(client, "all")

    # Stripe took the money: the patient is told so, not "Nothing was charged".
    assert result["http"] == 200 and result["status"] == "succeeded"
    page = client.get(result["redirect"]).content.decode()
    assert "Payment received" in page and "Nothing was charged" not in page
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert "could not queue payments.tasks.payment_receipt_task" in caplog.text
    assert not receipts()  # the receipt waits for the broker (or the sweep)
    payment = Payment.objects.get()
    assert CardToDetach.objects.filter(payment_method_id=payment.stripe_payment_method_id).exists()

    # Redis is back; the periodic reconciliation finishes what the lost tasks left, exactly once.
    broker.start()
    age_everything()
    payments_reconcile()
    payments_reconcile()
    assert len(receipts()) == 1 and receipts()[0].to == [patient.email]
    assert not CardToDetach.objects.exists()
    assert not stripe_fake.client().v1.payment_methods.retrieve(payment.stripe_payment_method_id).customer
    customer = patient.__class__.objects.get(pk=patient.pk).stripe_customer_id
    assert len(stripe_fake.intents_for(customer)) == 1  # one charge


def test_redis_down_a_provider_completes_twenty_sessions_and_each_is_billed_once_when_it_is_back(  # type: ignore[no-untyped-def]
    broker: PrivateRedis, settings
) -> None:
    sessions = [insured_session() for _ in range(20)]
    provider = sessions[0].provider
    for session in sessions[1:]:
        TherapySession.objects.filter(pk=session.pk).update(provider=provider)
    user = get_user_model().objects.create_user("ops-faults", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    admin = Client()
    staff_login(admin, user)
    broker.stop()

    response = admin.post(
        "/admin/invoices/therapysession/",
        {"action": "mark_completed", "_selected_action": [s.pk for s in sessions]},
        follow=True,
    )

    assert response.status_code == 200
    assert "20 session(s) completed" in response.content.decode()
    assert TherapySession.objects.filter(status=TherapySession.Status.COMPLETED).count() == 20
    assert not Invoice.objects.exists()  # the broker took nothing; nothing was lost either

    broker.start()
    settings.ISSUE_SWEEP_GRACE = timedelta(0)
    invoices_sweep()  # beat's 5-minute sweep, through the service it calls (tasks go to the live broker now)
    invoices_sweep()
    assert Invoice.objects.count() == 20
    assert sorted(Invoice.objects.values_list("session_id", flat=True)) == sorted(s.pk for s in sessions)
    invoice_emails = [m for m in mail.outbox if m.subject == "You have a new invoice from Alma"]
    assert len(invoice_emails) == 20
    assert len({m.to[0] for m in invoice_emails}) == 20  # one each


def test_redis_down_pages_do_not_fail_and_healthz_says_degraded(broker: PrivateRedis, stripe_api: str, patient) -> None:  # type: ignore[no-untyped-def]
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    broker.stop()
    for url in ("/pay/invoices/", "/pay/invoices/details/", checkout(client, "all")):
        assert client.get(url).status_code == 200, url
    health = Client().get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded"


@pytest.fixture
def slow_stripe(stripe_api: str, settings: Any) -> Iterator[StripeProxy]:
    """Stripe that takes 6 s to answer a PaymentIntent create (it still makes the charge), with a 4 s budget."""
    settings.STRIPE_TIMEOUT_SECONDS = 1.5
    settings.OUTSIDE_CALL_BUDGET_SECONDS = 4.0
    proxy = StripeProxy(stripe_api, hold_seconds=6)
    with proxy.running():
        settings.STRIPE_API_BASE = proxy.url
        yield proxy


def test_stripe_hanging_on_the_charge_is_said_as_unknown_within_the_budget_then_settled_once(  # type: ignore[no-untyped-def]
    slow_stripe: StripeProxy, patient
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)

    started = time.monotonic()
    result = confirm(client, fields)
    elapsed = time.monotonic() - started

    # Well inside gunicorn's timeout: the request did not wait for Stripe past its budget.
    assert elapsed < 4.0 + 1.0, elapsed
    assert result["status"] == "processing"
    page = client.get(result["redirect"]).content.decode()
    assert "We're confirming your payment" in page and "Nothing was charged" not in page

    assert slow_stripe.create_sent.wait(timeout=15)  # Stripe did make the charge, after our call gave up
    age_everything()
    payments_reconcile()

    payment = Payment.objects.get()
    assert payment.status == Payment.Status.SUCCEEDED and invoice.__class__.objects.get(pk=invoice.pk).status == "paid"
    assert slow_stripe.creates == 1  # adopted, never charged a second time
    assert "Payment received" in client.get(result["redirect"]).content.decode()


def test_stripe_not_answering_at_all_keeps_pages_inside_the_budget(  # type: ignore[no-untyped-def]
    stripe_api: str, patient, settings
) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 1.0
    settings.OUTSIDE_CALL_BUDGET_SECONDS = 3.0
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    with socket.socket() as black_hole:  # accepts connections (the kernel does) and never answers, like a hung Stripe
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        started = time.monotonic()
        result = confirm(client, fields)
        assert time.monotonic() - started < 3.0 + 1.0
        started = time.monotonic()
        assert client.get("/pay/invoices/").status_code == 200  # pages that don't need Stripe still answer
    # The card was never read back, so nothing was held or sent to be charged: saying so is true here.
    assert result["http"] == 503 and "Nothing was charged" in result["message"]
    assert not Payment.objects.exists()


def test_a_payment_stripe_no_longer_knows_is_released_flagged_and_payable_again(  # type: ignore[no-untyped-def]
    stripe_api: str, patient
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    card = services.card_saved(patient_id=patient.pk, setup_intent_id=fields["setup-id"])
    assert card is not None
    payment = services.payment_start(
        patient_id=patient.pk,
        invoice_ids=[invoice.pk],
        expected_amount_cents=7_000,
        attempt_key="forgotten",
        card=card,
        actor=SYSTEM,
    )
    Payment.objects.filter(pk=payment.pk).update(
        stripe_payment_intent_id="pi_forgotten0000000000000", status=Payment.Status.PROCESSING, charge_attempts=1
    )
    age_everything()

    with pytest.raises(CommandError, match="newly need a person"):
        call_command("reconcile_payments")

    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED and payment.failure_code == "unknown_at_stripe"
    assert invoice.number in payment.attention
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN
    call_command("reconcile_payments")  # nothing new: exit 0
    ops = get_user_model().objects.create_superuser("ops-dash", password="x")
    dashboard = Client()
    staff_login(dashboard, ops)
    assert payment.reference in dashboard.get("/admin/dashboard/").content.decode()
    # The patient can pay it now.
    assert pay(client, "all")["status"] == "succeeded"


def test_a_payment_whose_customer_stripe_does_not_know_either_is_flagged_not_released(  # type: ignore[no-untyped-def]
    stripe_api: str, patient
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    payment = Payment.objects.create(
        patient=patient,
        amount_cents=7_000,
        attempt_key="wrong-account",
        status=Payment.Status.PROCESSING,
        stripe_payment_intent_id="pi_elsewhere00000000000000",
        charge_attempts=1,
    )
    payment.allocations.create(invoice=invoice, amount_cents=7_000)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PROCESSING)
    patient.__class__.objects.filter(pk=patient.pk).update(stripe_customer_id="cus_unknownhere")
    age_everything()

    summary = payments_reconcile()

    payment.refresh_from_db()
    assert summary.flagged == 1 and not summary.ok
    assert payment.status == Payment.Status.PROCESSING  # may have been charged on another account: still held
    assert "STRIPE_SECRET_KEY" in payment.attention
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PROCESSING


def test_localstripe_stopped_mid_payment_the_result_page_answers_within_the_budget_then_settles(  # type: ignore[no-untyped-def]
    patient, settings
) -> None:
    """A card processor process frozen (SIGSTOP) after taking the charge: pages answer within the budget and say
    "We're confirming"; once it thaws, the same page shows the truth."""
    with stripe_fake.localstripe_running() as (url, process):
        settings.STRIPE_API_BASE, settings.STRIPE_JS_URL = url, f"{url}/js.stripe.com/v3/"
        settings.STRIPE_TIMEOUT_SECONDS, settings.OUTSIDE_CALL_BUDGET_SECONDS = 1.0, 3.0
        pid = process.pid
        (invoice,) = open_invoices(patient, 7_000)
        client = verified_client(invoice)
        fields = card_page(client, checkout(client, "all"))
        stripe_fake.save_card(fields["setup-id"], stripe_fake.THREE_D_SECURE)
        result = confirm(client, fields)
        assert result["status"] == "requires_action"  # the bank asks; the patient completes it...
        payment = Payment.objects.get()
        stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)

        os.kill(pid, signal.SIGSTOP)  # ...and the card processor freezes before we hear of it
        try:
            started = time.monotonic()
            page = client.get(f"/pay/payments/{payment.pk}/").content.decode()
            assert time.monotonic() - started < 3.0 + 1.0
            assert "We're confirming your payment" in page and "Nothing was charged" not in page
            refreshed = client.post(result["refresh"])
            assert refreshed.json()["status"] == "processing"
        finally:
            os.kill(pid, signal.SIGCONT)

        assert "Payment received" in client.get(f"/pay/payments/{payment.pk}/").content.decode()
        assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID


def test_a_hung_broker_costs_one_request_its_timeout_then_none(broker: PrivateRedis) -> None:
    """Redis frozen (SIGSTOP) rather than down: the first enqueue waits for its socket timeout, the next ones in
    the back-off window do not try at all (the sweeps finish their work)."""
    from alma_billing.core.queue import enqueue
    from payments.tasks import payment_receipt_task

    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert enqueue(payment_receipt_task, 1) is False
        first = time.monotonic() - started
        started = time.monotonic()
        assert enqueue(payment_receipt_task, 2) is False
        second = time.monotonic() - started
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert first < 12, first  # connect 2 s + socket 2 s, with one retry
    assert second < 0.5, second
