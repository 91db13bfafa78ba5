"""Stripe webhooks: nothing is stored without a valid signature; redelivery and disorder change nothing; disputes
and dashboard refunds reach the payment. Events are built from real PaymentIntents held by localstripe."""

import copy
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from alma_billing.core.audit import Actor
from alma_billing.core.models import AuditEvent
from invoices.models import Invoice
from payments import services
from payments.gateways import stripe as gateway
from payments.models import Payment, PaymentAllocation, Refund, StripeEvent
from tests.factories import PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import deliver, new_event_id, open_invoices, pay, post_raw, stripe_event, verified_client
from tests.staff import staff_login

pytestmark = pytest.mark.django_db


def intent_dict(intent_id: str) -> dict[str, Any]:
    return stripe_fake.client().v1.payment_intents.retrieve(intent_id).to_dict()


def failed_copy(intent: dict[str, Any]) -> dict[str, Any]:
    """The same PaymentIntent as a `payment_intent.payment_failed` event shows it: declined, waiting for a card."""
    failed = copy.deepcopy(intent)
    failed["status"] = "requires_payment_method"
    failed["next_action"] = None
    failed["last_payment_error"] = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
    return failed


def server_payment(patient: Any, invoices: list[Invoice], number: str) -> Payment:
    """What the card page does on the server (save card, hold invoices, charge), without the browser."""
    customer_id = services.patient_customer_id(patient_id=patient.pk)
    setup_id, _ = gateway.setup_intent_create(customer_id=customer_id, purpose="payment", key=uuid.uuid4().hex)
    stripe_fake.save_card(setup_id, number)
    card = gateway.card_from_setup_intent(setup_intent_id=setup_id, customer_id=customer_id)
    assert card is not None
    payment = services.payment_start(
        patient_id=patient.pk,
        invoice_ids=[i.pk for i in invoices],
        expected_amount_cents=sum(i.amount_cents for i in invoices),
        attempt_key=uuid.uuid4().hex,
        card=card,
        actor=Actor.patient(patient.pk),
    )
    return services.payment_charge(payment_id=payment.pk)


def receipts_to(patient: Any) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.to == [patient.email]]


def status_of(obj: Any) -> str:
    obj.refresh_from_db()
    return str(obj.status)


# --- the signature comes first -----------------------------------------------------------------------------------


def _signature(payload: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


BAD_SIGNATURES: dict[str, Callable[[bytes, str], tuple[bytes, str | None]]] = {
    "missing": lambda body, secret: (body, None),
    "empty": lambda body, secret: (body, ""),
    "garbage": lambda body, secret: (body, "t=1700000000,v1=deadbeef"),
    "another secret": lambda body, secret: (body, _signature(body, "whsec_someone_else", int(time.time()))),
    "stale timestamp": lambda body, secret: (body, _signature(body, secret, int(time.time()) - 301)),
    "far older timestamp": lambda body, secret: (body, _signature(body, secret, int(time.time()) - 3600)),
    "body changed after signing": lambda body, secret: (
        body.replace(b'"succeeded"', b'"succeeded" '),
        _signature(body, secret, int(time.time())),
    ),
}


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
def test_badly_signed_event_is_refused_and_nothing_is_stored_or_changed(
    case: str, stripe_api: str, patient: Any, settings: Any
) -> None:
    invoices = open_invoices(patient, 8_000)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    assert payment.status == Payment.Status.PROCESSING
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)
    event = stripe_fake.event_for_intent(
        new_event_id(), "payment_intent.succeeded", intent_dict(payment.stripe_payment_intent_id or "")
    )
    body = json.dumps(event).encode()

    payload, signature = BAD_SIGNATURES[case](body, settings.STRIPE_WEBHOOK_SECRET)
    response = post_raw(payload, signature)

    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
    assert status_of(payment) == Payment.Status.PROCESSING
    assert status_of(invoices[0]) == Invoice.Status.PROCESSING
    assert mail.outbox == []

    # Control: the same event, properly signed, is accepted and settles the payment.
    assert deliver(event).status_code == 200
    assert status_of(payment) == Payment.Status.SUCCEEDED


# --- a real 3-D Secure payment, settled by its webhook -------------------------------------------------------------


def test_p8_three_d_secure_payment_is_settled_by_its_webhook_with_one_receipt(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    invoices = open_invoices(patient, 6_000, 9_000)
    client = verified_client(invoices[-1])

    result = pay(client, "all", card=stripe_fake.THREE_D_SECURE)

    assert result["status"] == "requires_action", result
    payment = Payment.objects.get(patient=patient)
    assert payment.status == Payment.Status.PROCESSING and payment.amount_cents == 15_000
    assert [status_of(i) for i in invoices] == [Invoice.Status.PROCESSING] * 2
    pi_id = payment.stripe_payment_intent_id or ""

    stripe_fake.authenticate(pi_id, success=True)
    intent = stripe_fake.client().v1.payment_intents.retrieve(pi_id)
    assert intent.status == "succeeded"
    event = stripe_fake.event_for_intent("evt_3ds_succeeded", "payment_intent.succeeded", intent)

    response = deliver(event, django_capture_on_commit_callbacks)

    assert response.status_code == 200 and response.content == b"ok"
    stored = StripeEvent.objects.get(event_id="evt_3ds_succeeded")
    assert stored.type == "payment_intent.succeeded" and stored.processed_at is not None and stored.error == ""
    assert status_of(payment) == Payment.Status.SUCCEEDED and payment.succeeded_at is not None
    assert [status_of(i) for i in invoices] == [Invoice.Status.PAID] * 2
    assert all(i.paid_at is not None for i in invoices)
    receipts = receipts_to(patient)
    assert len(receipts) == 1 and "$150.00" in receipts[0].body
    # The patient's result page now says so.
    assert "Payment received" in client.get(f"/pay/payments/{payment.pk}/").content.decode()


def test_the_same_event_delivered_five_times_is_applied_once(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    invoices = open_invoices(patient, 4_500)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)
    event = stripe_fake.event_for_intent(
        "evt_five_times", "payment_intent.succeeded", intent_dict(payment.stripe_payment_intent_id or "")
    )

    answers = [deliver(event, django_capture_on_commit_callbacks) for _ in range(5)]

    assert [(a.status_code, a.content) for a in answers] == [(200, b"ok")] + [(200, b"duplicate")] * 4
    assert StripeEvent.objects.filter(event_id="evt_five_times").count() == 1
    assert status_of(payment) == Payment.Status.SUCCEEDED
    assert status_of(invoices[0]) == Invoice.Status.PAID
    assert len(receipts_to(patient)) == 1
    assert AuditEvent.objects.filter(action="payment.succeeded", object_id=str(payment.pk)).count() == 1


# --- out of order, many times ---------------------------------------------------------------------------------------


def _three_events(payment: Payment, tag: str) -> dict[str, dict[str, Any]]:
    """requires_action (from before authentication), a stale failure, and the success, for one real intent."""
    pi_id = payment.stripe_payment_intent_id or ""
    waiting = intent_dict(pi_id)
    assert waiting["status"] == "requires_action"
    stripe_fake.authenticate(pi_id, success=True)
    succeeded = intent_dict(pi_id)
    assert succeeded["status"] == "succeeded"
    return {
        "requires_action": stripe_fake.event_for_intent(f"evt_{tag}_ra", "payment_intent.requires_action", waiting),
        "failed": stripe_fake.event_for_intent(f"evt_{tag}_pf", "payment_intent.payment_failed", failed_copy(waiting)),
        "succeeded": stripe_fake.event_for_intent(f"evt_{tag}_ok", "payment_intent.succeeded", succeeded),
    }


def test_events_in_any_order_and_repeated_always_end_paid_with_one_receipt(
    stripe_api: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    for seed in range(10):
        patient = PatientFactory()
        invoices = open_invoices(patient, 3_000 + seed, 2_000)
        payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
        assert payment.status == Payment.Status.PROCESSING
        events = _three_events(payment, f"s{seed}")
        deliveries = [name for name in events for _ in range(3)]
        random.Random(seed).shuffle(deliveries)

        answers = [deliver(events[name], django_capture_on_commit_callbacks).status_code for name in deliveries]

        order = ", ".join(deliveries)
        assert answers == [200] * 9, order
        assert status_of(payment) == Payment.Status.SUCCEEDED, order
        assert payment.failure_code == "" and payment.failure_message == "", order
        assert [status_of(i) for i in invoices] == [Invoice.Status.PAID] * 2, order
        allocations = PaymentAllocation.objects.filter(payment=payment)
        assert {a.state for a in allocations} == {PaymentAllocation.State.SETTLED}, order
        assert len(receipts_to(patient)) == 1, order
        assert Refund.objects.filter(payment=payment).count() == 0, order
        assert StripeEvent.objects.filter(event_id__startswith=f"evt_s{seed}_").count() == 3, order


def test_without_the_success_event_a_stale_failure_releases_the_invoices(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    invoices = open_invoices(patient, 5_000)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    events = _three_events(payment, "nosuccess")

    for name in ["failed", "requires_action", "failed", "requires_action"]:
        assert deliver(events[name], django_capture_on_commit_callbacks).status_code == 200

    assert status_of(payment) == Payment.Status.FAILED and payment.failure_code == "card_declined"
    assert status_of(invoices[0]) == Invoice.Status.OPEN
    assert receipts_to(patient) == []


def test_a_failure_arriving_after_success_never_reopens_the_invoice(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    invoices = open_invoices(patient, 5_000, 6_000)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    events = _three_events(payment, "late")
    canceled = copy.deepcopy(events["failed"])
    canceled.update(id="evt_late_cancel", type="payment_intent.canceled")
    canceled["data"]["object"]["status"] = "canceled"

    for name in ["succeeded", "failed", "requires_action"]:
        assert deliver(events[name], django_capture_on_commit_callbacks).status_code == 200
    assert deliver(canceled, django_capture_on_commit_callbacks).status_code == 200

    assert status_of(payment) == Payment.Status.SUCCEEDED
    assert [status_of(i) for i in invoices] == [Invoice.Status.PAID] * 2
    assert {a.state for a in PaymentAllocation.objects.filter(payment=payment)} == {PaymentAllocation.State.SETTLED}
    assert len(receipts_to(patient)) == 1
    # Nothing is offered to pay again.
    client = verified_client(invoices[-1])
    assert pay(client, "all")["status"] == "redirected"


# --- disputes and refunds made outside the app ------------------------------------------------------------------


def test_a_dispute_flags_the_payment_and_its_invoices_for_staff(stripe_api: str, patient: Any) -> None:
    invoices = open_invoices(patient, 7_000, 2_500)
    payment = server_payment(patient, invoices, stripe_fake.GOOD_CARD)
    assert payment.status == Payment.Status.SUCCEEDED
    dispute = {
        "id": "dp_x",
        "object": "dispute",
        "payment_intent": payment.stripe_payment_intent_id,
        "charge": "ch_x",
        "status": "needs_response",
        "amount": payment.amount_cents,
        "reason": "fraudulent",
    }
    event = stripe_event("evt_dispute_1", "charge.dispute.created", dispute)

    assert deliver(event).status_code == 200

    payment.refresh_from_db()
    assert payment.disputed_at is not None and payment.dispute_status == "needs_response"
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.disputed_at == payment.disputed_at
        assert invoice.status == Invoice.Status.PAID
    audits = AuditEvent.objects.filter(action="payment.disputed", object_id=str(payment.pk))
    assert audits.count() == 1 and audits.get().actor_label == "stripe"

    # Later updates move the status on; the first date and the single audit entry stay.
    first_seen = payment.disputed_at
    updated = copy.deepcopy(event)
    updated.update(id="evt_dispute_2", type="charge.dispute.updated")
    updated["data"]["object"]["status"] = "under_review"
    assert deliver(updated).status_code == 200
    payment.refresh_from_db()
    assert payment.dispute_status == "under_review" and payment.disputed_at == first_seen
    assert AuditEvent.objects.filter(action="payment.disputed", object_id=str(payment.pk)).count() == 1


def test_a_dashboard_refund_is_recorded_and_an_older_event_never_lowers_it(stripe_api: str, patient: Any) -> None:
    invoices = open_invoices(patient, 10_000)
    payment = server_payment(patient, invoices, stripe_fake.GOOD_CARD)
    assert payment.status == Payment.Status.SUCCEEDED
    pi_id = payment.stripe_payment_intent_id or ""
    stripe = stripe_fake.client()
    charge_id = intent_dict(pi_id)["latest_charge"]
    charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]

    def refunded_charge(amount: int) -> dict[str, Any]:
        """Refund at localstripe as the dashboard would, and the charge as the charge.refunded event carries it."""
        stripe.v1.refunds.create(params={"payment_intent": pi_id, "amount": amount})
        return stripe.v1.charges.retrieve(charge_id).to_dict()

    older = stripe_event("evt_refund_1", "charge.refunded", refunded_charge(3_000))
    newer = stripe_event("evt_refund_2", "charge.refunded", refunded_charge(2_000))
    assert older["data"]["object"]["amount_refunded"] == 3_000
    assert newer["data"]["object"]["amount_refunded"] == 5_000

    assert deliver(newer).status_code == 200
    payment.refresh_from_db()
    assert payment.refunded_cents == 5_000
    refund = Refund.objects.get(payment=payment)
    assert refund.reason == Refund.Reason.STRIPE and refund.amount_cents == 5_000

    assert deliver(older).status_code == 200
    payment.refresh_from_db()
    assert payment.refunded_cents == 5_000
    assert sum(r.amount_cents for r in Refund.objects.filter(payment=payment)) == 5_000
    assert StripeEvent.objects.filter(type="charge.refunded").count() == 2
    assert status_of(invoices[0]) == Invoice.Status.PAID


def test_an_event_for_an_intent_that_is_not_ours_is_stored_and_changes_nothing(
    stripe_api: str, patient: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    invoices = open_invoices(patient, 4_000)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)
    ours = intent_dict(payment.stripe_payment_intent_id or "")
    stranger = dict(ours, id="pi_someone_elses", metadata={})
    # Another system on the same Stripe account that happens to use the same metadata key.
    lookalike = dict(ours, id="pi_lookalike", metadata={"payment_id": str(payment.pk)})
    events = [
        stripe_fake.event_for_intent("evt_foreign_1", "payment_intent.succeeded", stranger),
        stripe_fake.event_for_intent("evt_foreign_2", "payment_intent.succeeded", lookalike),
        stripe_fake.event_for_intent("evt_foreign_3", "payment_intent.payment_failed", failed_copy(lookalike)),
        stripe_event(
            "evt_foreign_4", "charge.refunded", {"id": "ch_y", "payment_intent": "pi_other", "amount_refunded": 10}
        ),
        stripe_event(
            "evt_foreign_5", "charge.dispute.created", {"id": "dp_y", "payment_intent": "pi_other", "status": "lost"}
        ),
        stripe_event("evt_foreign_6", "customer.created", {"id": "cus_z", "object": "customer"}),
    ]

    for event in events:
        response = deliver(event, django_capture_on_commit_callbacks)
        assert response.status_code == 200 and response.content == b"ok", event["id"]

    stored = StripeEvent.objects.filter(event_id__startswith="evt_foreign_")
    assert stored.count() == 6 and not stored.filter(processed_at__isnull=True).exists()
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PROCESSING and payment.stripe_payment_intent_id == ours["id"]
    assert payment.refunded_cents == 0 and payment.disputed_at is None
    assert status_of(invoices[0]) == Invoice.Status.PROCESSING
    assert Refund.objects.count() == 0 and mail.outbox == []


# --- a failure while applying leaves a trace, and the redelivery applies it -------------------------------------------


def test_an_event_that_fails_to_apply_is_recorded_for_ops_and_applied_when_stripe_delivers_it_again(
    stripe_api: str,
    patient: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    invoices = open_invoices(patient, 5_500)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)
    event = stripe_fake.event_for_intent(
        "evt_fails_once", "payment_intent.succeeded", intent_dict(payment.stripe_payment_intent_id or "")
    )
    real_apply = services.payment_apply_intent

    def apply_then_fail(**kwargs: Any) -> Any:
        real_apply(**kwargs)  # the invoice is marked paid inside the transaction ...
        raise RuntimeError("the database went away mid-event")  # ... and then the transaction is lost

    monkeypatch.setattr(services, "payment_apply_intent", apply_then_fail)
    first = deliver(event, django_capture_on_commit_callbacks)

    assert first.status_code == 500  # Stripe delivers it again
    stored = StripeEvent.objects.get(event_id="evt_fails_once")
    assert stored.outcome == StripeEvent.Outcome.FAILED and stored.processed_at is None
    assert stored.error == "RuntimeError: the database went away mid-event" and stored.attempts == 1
    assert status_of(payment) == Payment.Status.PROCESSING  # nothing of the failed try was kept
    assert status_of(invoices[0]) == Invoice.Status.PROCESSING
    assert receipts_to(patient) == []
    ops = staff_login(Client(), get_user_model().objects.create_superuser("ops-failed-event", password="x"))
    assert "1 Stripe event(s) that failed to apply" in ops.get("/admin/dashboard/").content.decode()
    listed = ops.get("/admin/payments/stripeevent/?outcome__exact=failed").content.decode()
    assert "evt_fails_once" in listed

    monkeypatch.setattr(services, "payment_apply_intent", real_apply)
    answers = [deliver(event, django_capture_on_commit_callbacks) for _ in range(2)]

    assert [(a.status_code, a.content) for a in answers] == [(200, b"ok"), (200, b"duplicate")]
    stored.refresh_from_db()
    assert stored.outcome == StripeEvent.Outcome.APPLIED and stored.error == "" and stored.attempts == 2
    assert status_of(payment) == Payment.Status.SUCCEEDED
    assert status_of(invoices[0]) == Invoice.Status.PAID
    assert len(receipts_to(patient)) == 1
    assert "0 Stripe event(s) that failed to apply" in ops.get("/admin/dashboard/").content.decode()


def test_an_event_that_keeps_failing_counts_its_deliveries_and_keeps_the_latest_error(
    stripe_api: str, patient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoices = open_invoices(patient, 2_500)
    payment = server_payment(patient, invoices, stripe_fake.THREE_D_SECURE)
    stripe_fake.authenticate(payment.stripe_payment_intent_id or "", success=True)
    event = stripe_fake.event_for_intent(
        "evt_fails_thrice", "payment_intent.succeeded", intent_dict(payment.stripe_payment_intent_id or "")
    )
    errors = iter([KeyError("first"), ValueError("second"), ZeroDivisionError("third")])

    def fail(**kwargs: Any) -> Any:
        raise next(errors)

    monkeypatch.setattr(services, "payment_apply_intent", fail)

    assert [deliver(event).status_code for _ in range(3)] == [500, 500, 500]
    stored = StripeEvent.objects.get(event_id="evt_fails_thrice")
    assert (stored.outcome, stored.attempts) == (StripeEvent.Outcome.FAILED, 3)
    assert stored.error == "ZeroDivisionError: third"
    assert status_of(payment) == Payment.Status.PROCESSING
