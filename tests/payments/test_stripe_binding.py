"""Stripe state binds to what we created (issue 10): an event or intent changes a payment only when it is the
intent we recorded for it, or the lost answer to our own create (our signature, amount, currency and customer).
Signed events of an unexpected shape answer 400 and store nothing; nothing here ever answers 5xx."""

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alma_billing.core.audit import SYSTEM
from invoices.models import Invoice
from payments import services
from payments.gateways import stripe as gateway
from payments.models import Payment, StripeEvent
from tests.payments import stripe_fake
from tests.payments.conftest import open_invoices
from tests.payments.test_webhooks import deliver, new_event_id, post_raw, stripe_event
from tests.staff import staff_login

pytestmark = pytest.mark.django_db


def in_flight_without_intent(patient: Any, amount: int = 7_000) -> tuple[Payment, Invoice]:
    """A held payment whose create call was made but whose answer never came back (no intent id recorded)."""
    (invoice,) = open_invoices(patient, amount)
    customer_id = services.patient_customer_id(patient_id=patient.pk)
    setup_id, _ = gateway.setup_intent_create(customer_id=customer_id, purpose="payment", key=uuid.uuid4().hex)
    stripe_fake.save_card(setup_id, stripe_fake.GOOD_CARD)
    card = gateway.card_from_setup_intent(setup_intent_id=setup_id, customer_id=customer_id)
    assert card is not None
    payment = services.payment_start(
        patient_id=patient.pk,
        invoice_ids=[invoice.pk],
        expected_amount_cents=amount,
        attempt_key=uuid.uuid4().hex,
        card=card,
        actor=SYSTEM,
    )
    Payment.objects.filter(pk=payment.pk).update(charge_attempts=1)
    payment.refresh_from_db()
    return payment, invoice


def our_create(payment: Payment) -> gateway.Intent:
    """Our own create for the payment, made the way payment_charge makes it (its answer then "lost")."""
    ours = gateway.payment_intent_create(
        amount_cents=payment.amount_cents,
        customer_id=services.patient_customer_id(patient_id=payment.patient_id),
        payment_method_id=payment.stripe_payment_method_id,
        payment_id=payment.pk,
        reference=payment.reference,
    )
    assert isinstance(ours, gateway.Intent)
    return ours


def foreign_intent(*, payment: Payment, **overrides: Any) -> Any:
    """A real, succeeded PaymentIntent at Stripe that names our payment in its metadata but is not our create."""
    customer_id = services.patient_customer_id(patient_id=payment.patient_id)
    params: dict[str, Any] = {
        "amount": payment.amount_cents,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment.stripe_payment_method_id,
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": {"payment_id": str(payment.pk)},
    }
    params.update(overrides)
    return stripe_fake.client().v1.payment_intents.create(params=params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case",
    [
        "no signature",
        "forged signature",
        "another amount",
        "another customer",
    ],
)
def test_a_signed_event_for_an_intent_we_did_not_create_changes_nothing(  # type: ignore[no-untyped-def]
    case: str, stripe_api, patient, django_capture_on_commit_callbacks
) -> None:
    payment, invoice = in_flight_without_intent(patient)
    if case == "no signature":
        intent = foreign_intent(payment=payment)
    elif case == "forged signature":
        intent = foreign_intent(payment=payment, metadata={"payment_id": str(payment.pk), "alma_sig": "0" * 32})
    elif case == "another amount":
        sig = gateway.payment_signature(payment_id=payment.pk, amount_cents=payment.amount_cents)
        intent = foreign_intent(payment=payment, amount=1, metadata={"payment_id": str(payment.pk), "alma_sig": sig})
    else:
        other = stripe_fake.client().v1.customers.create(params={"email": "someone@example.com"})
        sig = gateway.payment_signature(payment_id=payment.pk, amount_cents=payment.amount_cents)
        setup_id, _ = gateway.setup_intent_create(customer_id=other.id, purpose="payment", key=uuid.uuid4().hex)
        stripe_fake.save_card(setup_id, stripe_fake.GOOD_CARD)
        method = gateway.card_from_setup_intent(setup_intent_id=setup_id, customer_id=other.id)
        assert method is not None
        intent = foreign_intent(
            payment=payment,
            customer=other.id,
            payment_method=method.payment_method_id,
            metadata={"payment_id": str(payment.pk), "alma_sig": sig},
        )
    assert intent.status == "succeeded"

    response = deliver(
        stripe_event(new_event_id(), "payment_intent.succeeded", intent.to_dict()), django_capture_on_commit_callbacks
    )

    assert response.status_code == 200
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == Payment.Status.CREATED and not payment.stripe_payment_intent_id
    assert invoice.status == Invoice.Status.PROCESSING  # still held by our own, unanswered charge
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.NOT_OURS
    assert not mail.outbox  # no receipt for money we never asked for
    ops = staff_login(Client(), get_user_model().objects.create_superuser("ops-binding", password="x"))
    assert (
        "1 signed Stripe event(s) in 30 days about payments we never created"
        in ops.get("/admin/dashboard/").content.decode()
    )


def test_the_lost_answer_to_our_own_create_is_adopted(stripe_api, patient, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    payment, invoice = in_flight_without_intent(patient)
    ours = our_create(payment)
    raw = stripe_fake.client().v1.payment_intents.retrieve(ours.id).to_dict()

    deliver(stripe_event(new_event_id(), "payment_intent.succeeded", raw), django_capture_on_commit_callbacks)

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.stripe_payment_intent_id == ours.id
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.APPLIED


def test_an_event_for_another_intent_than_the_one_we_recorded_changes_nothing(stripe_api, patient) -> None:  # type: ignore[no-untyped-def]
    payment, invoice = in_flight_without_intent(patient)
    Payment.objects.filter(pk=payment.pk).update(
        stripe_payment_intent_id="pi_ourrecordedone000000", status="processing"
    )
    sig = gateway.payment_signature(payment_id=payment.pk, amount_cents=payment.amount_cents)
    intent = foreign_intent(payment=payment, metadata={"payment_id": str(payment.pk), "alma_sig": sig})

    deliver(stripe_event(new_event_id(), "payment_intent.succeeded", intent.to_dict()))

    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.PROCESSING
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.NOT_OURS


MALFORMED: dict[str, Any] = {
    "a JSON array": [1, 2, 3],
    "a string": "payment_intent.succeeded",
    "no id": {"type": "payment_intent.succeeded", "data": {"object": {}}},
    "no type": {"id": "evt_1", "data": {"object": {}}},
    "no data": {"id": "evt_1", "type": "payment_intent.succeeded"},
    "data is a list": {"id": "evt_1", "type": "payment_intent.succeeded", "data": []},
    "id is a number": {"id": 12, "type": "payment_intent.succeeded", "data": {"object": {}}},
    "intent without amount": {"id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}},
    "amount is text": {
        "id": "evt_3",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "status": "succeeded", "amount": "7000", "metadata": {}}},
    },
    "metadata is a list": {
        "id": "evt_4",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "status": "succeeded", "amount": 7000, "metadata": []}},
    },
    "refund total is negative": {
        "id": "evt_5",
        "type": "charge.refunded",
        "data": {"object": {"payment_intent": "pi_1", "amount_refunded": -5}},
    },
    "dispute on a list": {"id": "evt_6", "type": "charge.dispute.created", "data": {"object": {"payment_intent": [1]}}},
    "NUL in a string": {"id": "evt_7", "type": "x\u0000", "data": {"object": {}}},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_event_of_an_unexpected_shape_answers_400_and_stores_nothing(case: str, stripe_api) -> None:  # type: ignore[no-untyped-def]
    payload = json.dumps(MALFORMED[case]).encode()
    response = post_raw(payload, _sign(payload))
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def _sign(payload: bytes) -> str:
    import hashlib
    import hmac
    import time

    from django.conf import settings

    timestamp = int(time.time())
    digest = hmac.new(
        settings.STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=300), st.just("evt_prop"), st.integers()),
        "type": st.sampled_from(
            ["payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded", "charge.dispute.created"]
        )
        | st.text(max_size=120),
        "data": st.fixed_dictionaries(
            {},
            optional={
                "object": st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "status",
                            "amount",
                            "currency",
                            "customer",
                            "metadata",
                            "payment_intent",
                            "amount_refunded",
                        ]
                    ),
                    json_values,
                )
            },
        )
        | json_values,
    },
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=event_like | json_values)
def test_property_no_signed_body_makes_the_webhook_fail_or_pay_anything(body: Any, stripe_api, patient) -> None:  # type: ignore[no-untyped-def]
    payload = json.dumps(body).encode()
    response = post_raw(payload, _sign(payload))
    assert response.status_code in (200, 400), response.content
    assert not Payment.objects.filter(status=Payment.Status.SUCCEEDED).exists()
    assert (
        not StripeEvent.objects.filter(outcome=StripeEvent.Outcome.APPLIED).exclude(type__startswith="charge.").exists()
    )


def test_a_late_success_for_a_payment_we_already_released_pays_the_invoice(  # type: ignore[no-untyped-def]
    stripe_api, patient, django_capture_on_commit_callbacks
) -> None:
    """Our create timed out, reconciliation found no intent and released the payment; then Stripe's success arrives."""
    payment, invoice = in_flight_without_intent(patient)
    ours = our_create(payment)
    with transaction.atomic():
        services.lifecycle._release(  # what payment_abandon does when it cannot find the intent in time
            Payment.objects.select_for_update().get(pk=payment.pk), status="failed", code="not_sent", message="x"
        )
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN

    raw = stripe_fake.client().v1.payment_intents.retrieve(ours.id).to_dict()
    deliver(stripe_event(new_event_id(), "payment_intent.succeeded", raw), django_capture_on_commit_callbacks)

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.stripe_payment_intent_id == ours.id
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID  # not charged twice: it is paid
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.APPLIED


def test_a_signed_event_with_text_postgresql_cannot_store_answers_400(stripe_api) -> None:  # type: ignore[no-untyped-def]
    payload = b'{"id": "evt_s", "type": "payment_intent.succeeded", "data": {"object": {"note": "\\ud800"}}}'
    assert post_raw(payload, _sign(payload)).status_code == 400
    assert not StripeEvent.objects.exists()


def test_the_card_autopay_uses_is_never_detached(stripe_api, patient) -> None:  # type: ignore[no-untyped-def]
    from payments.models import AutopayEnrollment, CardToDetach

    payment, _ = in_flight_without_intent(patient)
    AutopayEnrollment.objects.create(
        patient=patient,
        stripe_payment_method_id=payment.stripe_payment_method_id,
        card_brand="visa",
        card_last4="4242",
        consent_text="x",
    )
    services.card_forget_later(payment_method_id=payment.stripe_payment_method_id)
    services.card_detach(payment_method_id=payment.stripe_payment_method_id)
    assert stripe_fake.client().v1.payment_methods.retrieve(payment.stripe_payment_method_id).customer
    assert not CardToDetach.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "evt_n", "type": "payment_intent.succeeded", "data": {"object": {"amount": NaN}}}',
        b'{"id": "evt_i", "type": "payment_intent.succeeded", "data": {"object": {"amount": 1e400}}}',
        b'{"id": "evt_d", "type": "x", "data": {"object": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}}",
    ],
    ids=["NaN", "a number too large", "nested 3000 deep"],
)
def test_a_signed_event_postgresql_could_not_store_answers_400(payload: bytes, stripe_api) -> None:  # type: ignore[no-untyped-def]
    assert post_raw(payload, _sign(payload)).status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_signature_from_the_future_is_refused(stripe_api) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import hmac
    import time

    from django.conf import settings

    payload = b'{"id": "evt_future", "type": "x", "data": {"object": {}}}'
    timestamp = int(time.time()) + 3600
    digest = hmac.new(
        settings.STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    assert post_raw(payload, f"t={timestamp},v1={digest}").status_code == 400
    assert not StripeEvent.objects.exists()


def test_an_intent_naming_our_unanswered_payment_that_is_not_ours_flags_it_and_keeps_it_held(  # type: ignore[no-untyped-def]
    stripe_api, patient
) -> None:
    """Reconciliation looks for the intent our lost create made and finds one without our signature: it may be
    someone else's charge, so it is neither adopted nor released; a person decides."""
    from datetime import timedelta

    from django.utils import timezone

    from payments.reconcile import payments_reconcile

    payment, invoice = in_flight_without_intent(patient)
    foreign_intent(payment=payment)  # same customer and amount, names our payment, no signature
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=30))

    summary = payments_reconcile()

    payment.refresh_from_db()
    assert payment.status == Payment.Status.CREATED and not payment.stripe_payment_intent_id
    assert "not ours" in payment.attention and invoice.number in payment.attention
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PROCESSING
    assert summary.flagged == 1 and not summary.ok  # reconcile_payments exits 1: a person is needed
    assert payments_reconcile().flagged == 0  # and only once
