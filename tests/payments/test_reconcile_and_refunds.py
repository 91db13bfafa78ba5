"""Reconciliation finds payments whose webhook never came; paying twice is refunded automatically; staff refunds;
and the database rule that an invoice has at most one live payment, under concurrent requests."""

import contextlib
import copy
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError
from alma_billing.core.models import AuditEvent
from invoices.models import Invoice
from payments import services
from payments.gateways import stripe as gateway
from payments.models import Payment, PaymentAllocation, Refund
from payments.tasks import surplus_refund_task
from tests.factories import PatientFactory, PaymentAllocationFactory, PaymentFactory, UserFactory
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices, pay, verified_client

WEBHOOK = "/stripe/webhook/"
State = PaymentAllocation.State


def status_of(obj: Any) -> str:
    obj.refresh_from_db()
    return str(obj.status)


def age(payment: Payment, by: timedelta) -> None:
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - by)


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_payments", stdout=out)
    return out.getvalue()


def intent_dict(intent_id: str) -> dict[str, Any]:
    return stripe_fake.client().v1.payment_intents.retrieve(intent_id).to_dict()


def deliver(client: Any, event: dict[str, Any]) -> Any:
    payload, signature = stripe_fake.signed_event(event)
    return client.post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def charge_refunded_event(event_id: str, intent_id: str) -> dict[str, Any]:
    """The charge.refunded event Stripe sends after any refund, with the charge as it is now at localstripe."""
    charge = intent_dict(intent_id)["latest_charge"]
    charge = charge if isinstance(charge, dict) else stripe_fake.client().v1.charges.retrieve(charge).to_dict()
    return {"id": event_id, "object": "event", "type": "charge.refunded", "data": {"object": charge}}


def stripe_refunds(intent_id: str) -> list[int]:
    return [r.amount for r in stripe_fake.client().v1.refunds.list(params={"payment_intent": intent_id}).data]


def fake_card() -> gateway.Card:
    return gateway.Card(payment_method_id="pm_never_sent", customer_id="", brand="visa", last4="4242", funding="credit")


def saved_card(patient: Any, number: str = stripe_fake.GOOD_CARD) -> gateway.Card:
    """A card saved through a SetupIntent, as the card page does."""
    customer_id = services.patient_customer_id(patient_id=patient.pk)
    setup_id, _ = gateway.setup_intent_create(customer_id=customer_id, purpose="payment", key=uuid.uuid4().hex)
    stripe_fake.save_card(setup_id, number)
    card = gateway.card_from_setup_intent(setup_intent_id=setup_id, customer_id=customer_id)
    assert card is not None
    return card


def start(patient: Any, invoices: list[Invoice], card: gateway.Card | None = None, key: str = "") -> Payment:
    return services.payment_start(
        patient_id=patient.pk,
        invoice_ids=[i.pk for i in invoices],
        expected_amount_cents=sum(i.amount_cents for i in invoices),
        attempt_key=key or uuid.uuid4().hex,
        card=card or fake_card(),
        actor=Actor.patient(patient.pk),
    )


# --- reconciliation --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_payment_whose_webhook_never_came_is_settled_by_reconciliation(stripe_api: str, patient: Any) -> None:
    invoices = open_invoices(patient, 6_500)
    client = verified_client(invoices[0])
    assert pay(client, "all", card=stripe_fake.THREE_D_SECURE)["status"] == "requires_action"
    payment = Payment.objects.get(patient=patient)
    assert payment.status == Payment.Status.PROCESSING
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)

    # Too recent: the webhook may still come, so reconciliation leaves it alone.
    assert "Checked 0 payment(s)" in reconcile()
    assert status_of(payment) == Payment.Status.PROCESSING

    age(payment, timedelta(minutes=11))
    out = reconcile()

    assert "Checked 1 payment(s) in flight: 1 succeeded" in out, out
    assert status_of(payment) == Payment.Status.SUCCEEDED
    assert status_of(invoices[0]) == Invoice.Status.PAID
    assert "Checked 0 payment(s)" in reconcile()  # settled payments are not asked about again


@pytest.mark.django_db
def test_a_payment_held_but_never_sent_to_stripe_is_released_and_the_invoice_can_be_paid(
    stripe_api: str, patient: Any, settings: Any
) -> None:
    invoices = open_invoices(patient, 4_000, 5_000)
    payment = start(patient, invoices)
    assert payment.status == Payment.Status.CREATED and not payment.stripe_payment_intent_id
    assert [status_of(i) for i in invoices] == [Invoice.Status.PROCESSING] * 2
    age(payment, settings.PAYMENT_RECONCILE_AFTER + timedelta(minutes=1))

    out = reconcile()

    assert "Checked 1 payment(s) in flight: 0 succeeded, 1 failed" in out, out
    assert status_of(payment) == Payment.Status.FAILED and payment.failure_code == "not_sent"
    assert "Nothing was charged" in payment.failure_message
    assert [status_of(i) for i in invoices] == [Invoice.Status.OPEN] * 2
    assert {a.state for a in payment.allocations.all()} == {State.RELEASED}

    client = verified_client(invoices[-1])
    result = pay(client, "all")
    assert result["status"] == "succeeded", result
    assert [status_of(i) for i in invoices] == [Invoice.Status.PAID] * 2
    assert Payment.objects.filter(patient=patient, status=Payment.Status.SUCCEEDED).get().amount_cents == 9_000


@pytest.mark.django_db
def test_an_abandoned_card_check_is_canceled_at_stripe_after_an_hour(stripe_api: str, patient: Any) -> None:
    invoices = open_invoices(patient, 3_300)
    client = verified_client(invoices[0])
    assert pay(client, "all", card=stripe_fake.THREE_D_SECURE)["status"] == "requires_action"
    payment = Payment.objects.get(patient=patient)
    pi_id = payment.stripe_payment_intent_id or ""

    # Older than the reconcile threshold but younger than an hour: the patient may still be in the bank's check.
    age(payment, timedelta(minutes=30))
    assert "1 still waiting" in reconcile()
    assert status_of(payment) == Payment.Status.PROCESSING
    assert intent_dict(pi_id)["status"] == "requires_action"

    age(payment, timedelta(hours=1, minutes=5))
    out = reconcile()

    assert "Checked 1 payment(s) in flight: 0 succeeded, 1 failed or canceled" in out, out
    assert intent_dict(pi_id)["status"] == "canceled"
    assert status_of(payment) == Payment.Status.CANCELED
    assert status_of(invoices[0]) == Invoice.Status.OPEN
    assert pay(client, "all")["status"] == "succeeded"
    assert status_of(invoices[0]) == Invoice.Status.PAID


# --- paid twice --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_paid_twice_the_second_charge_is_refunded_automatically(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    (invoice,) = open_invoices(patient, 8_800)
    client = verified_client(invoice)
    assert pay(client, "all", card=stripe_fake.THREE_D_SECURE)["status"] == "requires_action"
    first = Payment.objects.get(patient=patient)
    pi_first = first.stripe_payment_intent_id or ""

    # A stale failure report for the first payment lets the invoice go...
    failed = copy.deepcopy(intent_dict(pi_first))
    failed.update(
        status="requires_payment_method",
        next_action=None,
        last_payment_error={"type": "card_error", "code": "card_declined", "message": "Your card was declined."},
    )
    event = stripe_fake.event_for_intent("evt_first_failed", "payment_intent.payment_failed", failed)
    assert deliver(client, event).status_code == 200
    assert status_of(first) == Payment.Status.FAILED
    assert status_of(invoice) == Invoice.Status.OPEN

    # ...so the patient pays it again with another card...
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(client, "all")["status"] == "succeeded"
    second = Payment.objects.exclude(pk=first.pk).get(patient=patient)
    assert status_of(second) == Payment.Status.SUCCEEDED and status_of(invoice) == Invoice.Status.PAID

    # ...and then the first card check completes after all: Stripe took the money twice.
    stripe_fake.authenticate(pi_first, success=True)
    event = stripe_fake.event_for_intent("evt_first_ok", "payment_intent.succeeded", intent_dict(pi_first))
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, event).status_code == 200

    assert status_of(invoice) == Invoice.Status.PAID
    assert status_of(first) == Payment.Status.SUCCEEDED
    allocation = PaymentAllocation.objects.get(payment=first)
    assert allocation.state == State.SURPLUS and allocation.refunded_cents == 8_800
    assert PaymentAllocation.objects.get(payment=second).state == State.SETTLED
    refund = Refund.objects.get(payment=first)
    assert refund.reason == Refund.Reason.DUPLICATE and refund.amount_cents == 8_800
    assert refund.invoice_id == invoice.pk and refund.stripe_refund_id
    assert first.refunded_cents == first.amount_cents == 8_800
    assert stripe_refunds(pi_first) == [8_800]
    assert stripe_refunds(second.stripe_payment_intent_id or "") == []
    assert Refund.objects.filter(payment=second).count() == 0

    # The task runs again (a redelivered message): nothing more goes back.
    assert surplus_refund_task.delay(allocation.pk).get() is None
    assert stripe_refunds(pi_first) == [8_800]
    assert Refund.objects.filter(payment=first).count() == 1
    assert status_of(first) == Payment.Status.SUCCEEDED and first.refunded_cents == 8_800
    # Stripe then reports the refund it made for us: it is not recorded a second time.
    assert deliver(client, charge_refunded_event("evt_first_refunded", pi_first)).status_code == 200
    first.refresh_from_db()
    assert first.refunded_cents == 8_800 and Refund.objects.filter(payment=first).count() == 1


# --- staff refunds -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_refund_of_one_invoice_voids_it_and_refunds_only_its_share(stripe_api: str, patient: Any) -> None:
    older, newer = open_invoices(patient, 4_000, 6_500)
    client = verified_client(newer)
    assert pay(client, "all")["status"] == "succeeded"
    payment = Payment.objects.get(patient=patient)
    pi_id = payment.stripe_payment_intent_id or ""
    user: Any = UserFactory()

    refund = services.refund_issue(
        payment_id=payment.pk, invoice_id=older.pk, actor=Actor.staff(user), note="Billed in error"
    )

    assert refund.amount_cents == 4_000 and refund.reason == Refund.Reason.STAFF and refund.invoice_id == older.pk
    assert refund.created_by == user and refund.note == "Billed in error" and refund.stripe_refund_id
    assert stripe_refunds(pi_id) == [4_000]
    older.refresh_from_db()
    assert older.status == Invoice.Status.VOID and older.voided_at is not None
    assert "Billed in error" in older.void_reason
    assert status_of(newer) == Invoice.Status.PAID
    payment.refresh_from_db()
    assert payment.refunded_cents == 4_000 and payment.status == Payment.Status.SUCCEEDED
    audit = AuditEvent.objects.get(action="payment.refunded", object_id=str(payment.pk))
    assert audit.actor == user and audit.actor_label == f"user:{user.pk}"
    assert audit.data["amount_cents"] == 4_000 and audit.data["invoice_id"] == older.pk
    # Stripe's charge.refunded for this same refund changes nothing more.
    assert deliver(client, charge_refunded_event("evt_staff_refunded", pi_id)).status_code == 200
    payment.refresh_from_db()
    assert payment.refunded_cents == 4_000 and Refund.objects.filter(payment=payment).count() == 1
    # The receipt (for an FSA/HSA claim) still downloads, and the result page says what went back to the card.
    receipt = client.get(f"/pay/payments/{payment.pk}/receipt.pdf")
    assert receipt.status_code == 200 and receipt["Content-Type"] == "application/pdf"
    assert (
        "$40.00 of this payment was refunded to your card."
        in client.get(f"/pay/payments/{payment.pk}/").content.decode()
    )

    with pytest.raises(ServiceError):
        services.refund_issue(payment_id=payment.pk, invoice_id=older.pk, actor=Actor.staff(user), note="Again")
    for empty in ("", "  "):
        with pytest.raises(ServiceError):
            services.refund_issue(payment_id=payment.pk, invoice_id=newer.pk, actor=Actor.staff(user), note=empty)
    assert stripe_refunds(pi_id) == [4_000]
    assert status_of(newer) == Invoice.Status.PAID
    assert Refund.objects.filter(payment=payment).count() == 1


@pytest.mark.django_db
def test_staff_cannot_refund_a_payment_that_did_not_succeed(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 5_100)
    client = verified_client(invoice)
    assert pay(client, "all", card=stripe_fake.DECLINED_AT_CHARGE)["status"] == "failed"
    payment = Payment.objects.get(patient=patient)
    assert payment.status == Payment.Status.FAILED

    with pytest.raises(ServiceError) as raised:
        services.refund_issue(
            payment_id=payment.pk, invoice_id=None, actor=Actor.staff(UserFactory()), note="Customer asked"
        )

    assert "has not succeeded" in raised.value.message
    assert Refund.objects.count() == 0 and status_of(invoice) == Invoice.Status.OPEN


@pytest.mark.django_db
def test_staff_refund_after_a_dashboard_refund_never_refunds_more_than_was_paid(stripe_api: str, patient: Any) -> None:
    older, newer = open_invoices(patient, 4_000, 6_500)
    client = verified_client(newer)
    assert pay(client, "all")["status"] == "succeeded"
    payment = Payment.objects.get(patient=patient)
    pi_id = payment.stripe_payment_intent_id or ""
    stripe_fake.client().v1.refunds.create(params={"payment_intent": pi_id, "amount": 5_000})  # the dashboard
    assert deliver(client, charge_refunded_event("evt_dashboard", pi_id)).status_code == 200
    payment.refresh_from_db()
    assert payment.refunded_cents == 5_000

    # Refusing with a sentence staff can read is fine; refunding at most what is left is fine too.
    with contextlib.suppress(ServiceError):
        services.refund_issue(
            payment_id=payment.pk, invoice_id=newer.pk, actor=Actor.staff(UserFactory()), note="Billed in error"
        )

    payment.refresh_from_db()
    assert sum(stripe_refunds(pi_id)) == payment.refunded_cents <= payment.amount_cents
    assert sum(r.amount_cents for r in Refund.objects.filter(payment=payment)) == payment.refunded_cents


# --- work a lost task left undone ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_lost_duplicate_refund_is_finished_by_the_payments_job(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 2_700)
    first = start(patient, [invoice], card=saved_card(patient, stripe_fake.THREE_D_SECURE))
    first = services.payment_charge(payment_id=first.pk)
    pi_first = first.stripe_payment_intent_id or ""
    stale_failure = gateway.Intent(
        id=pi_first, status="requires_payment_method", amount_cents=2_700, failure_code="card_declined"
    )
    services.payment_apply_intent(intent=stale_failure)
    assert status_of(first) == Payment.Status.FAILED and status_of(invoice) == Invoice.Status.OPEN
    second = services.payment_charge(payment_id=start(patient, [invoice], card=saved_card(patient)).pk)
    assert second.status == Payment.Status.SUCCEEDED and status_of(invoice) == Invoice.Status.PAID
    stripe_fake.authenticate(pi_first, success=True)
    # The success is applied, but the on_commit refund task never runs (the test transaction does not commit).
    services.payment_apply_intent(intent=gateway.payment_intent_retrieve(pi_first))
    assert PaymentAllocation.objects.get(payment=first).state == State.SURPLUS
    assert stripe_refunds(pi_first) == []
    Payment.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - timedelta(hours=2), succeeded_at=timezone.now() - timedelta(hours=1)
    )

    reconcile()

    assert stripe_refunds(pi_first) == [2_700]
    assert Refund.objects.get(payment=first).reason == Refund.Reason.DUPLICATE


@pytest.mark.django_db
def test_p8_a_lost_receipt_email_is_sent_by_the_payments_job(stripe_api: str, patient: Any) -> None:
    (invoice,) = open_invoices(patient, 3_100)
    payment = services.payment_charge(payment_id=start(patient, [invoice], card=saved_card(patient)).pk)
    assert payment.status == Payment.Status.SUCCEEDED
    assert mail.outbox == []  # the on_commit receipt task never ran: lost
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(hours=2), succeeded_at=timezone.now() - timedelta(hours=1)
    )

    reconcile()

    assert [m.to for m in mail.outbox] == [[patient.email]]
    payment.refresh_from_db()
    assert payment.receipt_emailed_at is not None


# --- one live payment per invoice ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_payments_started_at_once_for_overlapping_invoices_only_one_wins(postgres: None) -> None:
    patient = PatientFactory()
    invoices = open_invoices(patient, 1_000, 2_000, 3_000)
    newest = invoices[-1]
    choices = {"recent": [newest], "all": invoices}
    barrier = threading.Barrier(len(choices))
    outcomes: dict[str, Any] = {}

    def attempt(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[name] = start(patient, choices[name], key=f"race-{name}")
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            outcomes[name] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(name,)) for name in choices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [name for name, outcome in outcomes.items() if isinstance(outcome, Payment)]
    losers = [outcome for outcome in outcomes.values() if isinstance(outcome, ServiceError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert losers[0].code == "stale"
    assert Payment.objects.count() == 1
    live = PaymentAllocation.objects.filter(state__in=[State.PENDING, State.SETTLED])
    for invoice in invoices:
        assert live.filter(invoice=invoice).count() <= 1
    held = {a.invoice_id for a in live}
    assert held == {i.pk for i in choices[winners[0]]}
    for invoice in invoices:
        expected = Invoice.Status.PROCESSING if invoice.pk in held else Invoice.Status.OPEN
        assert status_of(invoice) == expected


@pytest.mark.django_db
def test_the_database_refuses_a_second_live_allocation_for_an_invoice(patient: Any) -> None:
    (invoice,) = open_invoices(patient, 2_200)
    start(patient, [invoice])
    other = PaymentFactory(patient=patient, amount_cents=2_200, attempt_key="second")

    for state in (State.PENDING, State.SETTLED):
        with pytest.raises(IntegrityError), transaction.atomic():
            PaymentAllocationFactory(payment=other, invoice=invoice, amount_cents=2_200, state=state)

    # A released share is history, not a hold: it may sit beside the live one.
    PaymentAllocationFactory(payment=other, invoice=invoice, amount_cents=2_200, state=State.RELEASED)
    assert PaymentAllocation.objects.filter(invoice=invoice).count() == 2


@pytest.mark.django_db
def test_a_charge_whose_answer_was_lost_is_adopted_not_released(stripe_api: str, patient: Any) -> None:
    """The call reached Stripe and charged, but its answer never came back (timeout, dead worker)."""
    (invoice,) = open_invoices(patient, 6_000)
    payment = start(patient, [invoice], card=saved_card(patient))
    customer_id = services.patient_customer_id(patient_id=patient.pk)
    charged = gateway.payment_intent_create(
        amount_cents=payment.amount_cents,
        customer_id=customer_id,
        payment_method_id=payment.stripe_payment_method_id,
        payment_id=payment.pk,
        reference=payment.reference,
    )
    assert isinstance(charged, gateway.Intent) and charged.status == "succeeded"
    Payment.objects.filter(pk=payment.pk).update(charge_attempts=1)  # counted before the call, as payment_charge does
    age(payment, timedelta(minutes=30))

    reconcile()

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.stripe_payment_intent_id == charged.id
    assert status_of(invoice) == Invoice.Status.PAID
    assert [i.id for i in stripe_fake.intents_for(customer_id)] == [charged.id]  # adopted, not charged again


@pytest.mark.django_db
def test_reconcile_payments_honours_v0_and_exits_1_when_a_payment_could_not_be_checked(
    stripe_api: str, patient, settings
) -> None:
    from django.core.management.base import CommandError

    out = StringIO()
    call_command("reconcile_payments", "-v0", stdout=out)
    assert out.getvalue() == ""  # quiet, and exit 0: nothing to do

    (invoice,) = open_invoices(patient, 6_000)
    payment = start(patient, [invoice], card=saved_card(patient))
    Payment.objects.filter(pk=payment.pk).update(stripe_payment_intent_id="pi_unreachable0000", status="processing")
    age(payment, timedelta(minutes=30))
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: Stripe cannot be asked
    with pytest.raises(CommandError, match="1 payment\\(s\\) could not be checked"):
        call_command("reconcile_payments", stdout=out)
    assert "1 could not be checked" in out.getvalue()
