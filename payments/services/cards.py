"""Cards: the patient's Stripe customer, saving a card through a SetupIntent, and detaching cards we must not keep."""

import uuid

from alma_billing.core.queue import enqueue_on_commit
from invoices.models import Patient
from payments.gateways import stripe as gateway
from payments.models import AutopayEnrollment, CardToDetach, Payment


def patient_customer_id(*, patient_id: int) -> str:
    """The patient's Stripe customer, created once (idempotency key from the patient id)."""
    patient = Patient.objects.get(pk=patient_id)
    if patient.stripe_customer_id:
        return patient.stripe_customer_id
    customer_id = gateway.customer_create(patient_id=patient.pk, email=patient.email)
    Patient.objects.filter(pk=patient.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    patient.refresh_from_db(fields=["stripe_customer_id"])
    return patient.stripe_customer_id


def card_setup_start(*, patient_id: int, purpose: str) -> tuple[str, str]:
    """A SetupIntent for Stripe.js to save a card on (the pay page and autopay): (id, client secret)."""
    customer_id = patient_customer_id(patient_id=patient_id)
    return gateway.setup_intent_create(
        customer_id=customer_id, purpose=purpose, key=f"{purpose}-{patient_id}-{uuid.uuid4().hex}"
    )


def card_saved(*, patient_id: int, setup_intent_id: str) -> gateway.Card | None:
    """The card Stripe.js saved on a SetupIntent, if that SetupIntent is this patient's and succeeded."""
    customer_id = patient_customer_id(patient_id=patient_id)
    return gateway.card_from_setup_intent(setup_intent_id=setup_intent_id, customer_id=customer_id)


def card_forget_later(*, payment_method_id: str) -> None:
    """Promise to detach a saved card we must not keep: recorded in the caller's transaction (the outbox), detached
    at Stripe after the commit, and by reconciliation if that task is lost."""
    from payments.tasks import card_detach_task

    if not payment_method_id:
        return
    CardToDetach.objects.get_or_create(payment_method_id=payment_method_id)
    enqueue_on_commit(card_detach_task, payment_method_id)


def card_detach(*, payment_method_id: str) -> None:
    """Detach the card at Stripe, then strike it from the outbox. A card autopay now uses is kept."""
    in_use = AutopayEnrollment.objects.filter(stripe_payment_method_id=payment_method_id, ended_at__isnull=True)
    if not in_use.exists():
        gateway.payment_method_detach(payment_method_id)
    CardToDetach.objects.filter(payment_method_id=payment_method_id).delete()


def payment_forget_card(*, payment_id: int) -> None:
    """Detach a card the patient did not ask us to keep, once the payment has settled."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.keep_card or not payment.stripe_payment_method_id or payment.status in Payment.OPEN_STATUSES:
        return
    gateway.payment_method_detach(payment.stripe_payment_method_id)
