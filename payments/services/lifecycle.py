"""The payment state machine: hold invoices, charge, settle or release, and apply what Stripe reports.

Every path that learns a PaymentIntent's state (the pay page, the return page, webhooks, reconciliation) goes
through `payment_apply_intent`, which is idempotent and only moves a payment forward: success always wins (money
was taken), a failure never undoes a success, and a duplicate or late report changes nothing.
"""

import hmac
import logging
from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy, gettext_noop

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_record
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.queue import enqueue_on_commit
from invoices.models import Invoice, Patient
from payments.gateways import stripe as gateway
from payments.models import AutopayAttempt, Payment, PaymentAllocation
from payments.services.cards import card_forget_later

logger = logging.getLogger(__name__)

State = PaymentAllocation.State
STALE = gettext_lazy("These invoices were just paid or are being paid. Here is what you still owe.")
CHANGED = gettext_lazy("Your balance changed since this page was opened. Please review your invoices before paying.")

# The audit action of a payment that let go of its invoices, by the status it ended in.
_RELEASED_ACTIONS = {
    Payment.Status.FAILED: AuditAction.PAYMENT_FAILED,
    Payment.Status.CANCELED: AuditAction.PAYMENT_CANCELED,
}
# Stripe PaymentIntent statuses that mean the payment is still on its way.
IN_FLIGHT = {"requires_action", "processing", "requires_confirmation", "requires_capture"}


def payment_action_secret(*, payment: Payment) -> str | None:
    """The client secret Stripe.js needs when the bank asks the patient to authenticate, else None."""
    if payment.status != Payment.Status.PROCESSING or not payment.stripe_payment_intent_id:
        return None
    intent = gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    return intent.client_secret if intent.status == "requires_action" else None


def payment_start(
    *,
    patient_id: int,
    invoice_ids: Sequence[int],
    expected_amount_cents: int,
    attempt_key: str,
    card: gateway.Card,
    actor: Actor,
    source: str = Payment.Source.PATIENT,
    keep_card: bool = False,
) -> Payment:
    """Hold the chosen open invoices for one new payment. The amount is computed here, never taken from the page.

    The same attempt key returns the same payment (a double click). An invoice already held or paid by another
    payment is refused: the database allows one live allocation per invoice.
    """
    existing = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            # The patient first, then the invoices: the order autopay enrollment locks them in, so a Pay click and
            # "turn on autopay and pay what is open" at the same moment wait for each other instead of deadlocking.
            Patient.objects.select_for_update().filter(pk=patient_id).values_list("pk", flat=True).first()
            invoices = list(
                Invoice.objects.select_for_update().filter(pk__in=invoice_ids, patient_id=patient_id).order_by("pk")
            )
            if not invoices or len(invoices) != len(set(invoice_ids)):
                raise ServiceError(STALE, code="stale")
            if any(invoice.status != Invoice.Status.OPEN for invoice in invoices):
                # A concurrent request with the same attempt key may have held them first: that is this payment.
                existing = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
                if existing is not None:
                    return existing
                raise ServiceError(STALE, code="stale")
            amount = sum(invoice.owed_cents for invoice in invoices)
            if amount != expected_amount_cents:
                raise ServiceError(CHANGED, code="changed")
            payment = Payment.objects.create(
                patient_id=patient_id,
                amount_cents=amount,
                attempt_key=attempt_key,
                source=source,
                keep_card=keep_card,
                stripe_payment_method_id=card.payment_method_id,
                card_brand=card.brand,
                card_last4=card.last4,
            )
            PaymentAllocation.objects.bulk_create(
                PaymentAllocation(payment=payment, invoice=invoice, amount_cents=invoice.owed_cents)
                for invoice in invoices
            )
            Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(status=Invoice.Status.PROCESSING)
            audit_record(
                actor=actor,
                action=AuditAction.PAYMENT_STARTED,
                obj=payment,
                amount_cents=amount,
                invoice_ids=[i.pk for i in invoices],
            )
    except IntegrityError as error:
        # A concurrent request with the same attempt key, or another live payment on one of these invoices.
        existing = Payment.objects.filter(attempt_key=attempt_key, patient_id=patient_id).first()
        if existing is not None:
            return existing
        raise ServiceError(STALE, code="stale") from error
    return payment


def payment_charge(*, payment_id: int) -> Payment:
    """Create and confirm the PaymentIntent for a held payment, once. Safe to call again or concurrently.

    The attempt is counted and committed before Stripe is called. If a worker dies during the call, the next
    call sees the count and first looks for the intent the dead one may have created (the idempotency key covers
    this at Stripe too); a concurrent call waits on the row lock and then finds the intent id.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status != Payment.Status.CREATED:
            return payment
        sent_already = bool(payment.stripe_payment_intent_id)
        if not sent_already:
            payment.charge_attempts += 1
            payment.save(update_fields=["charge_attempts"])
    if sent_already:
        # Sent, but its outcome was never applied (the worker died in between): ask Stripe instead of sending again.
        return payment_refresh(payment_id=payment_id)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status != Payment.Status.CREATED or payment.stripe_payment_intent_id:
            return payment
        customer_id = Patient.objects.values_list("stripe_customer_id", flat=True).get(pk=payment.patient_id)
        try:
            result: gateway.Intent | gateway.Declined | None = None
            if payment.charge_attempts > 1:
                result = gateway.payment_intent_find(customer_id=customer_id, payment_id=payment.pk)
            if result is None:
                result = gateway.payment_intent_create(
                    amount_cents=payment.amount_cents,
                    customer_id=customer_id,
                    payment_method_id=payment.stripe_payment_method_id,
                    payment_id=payment.pk,
                    reference=payment.reference,
                    off_session=payment.source == Payment.Source.AUTOPAY,
                )
        except TransportError as error:
            if error.permanent:
                _release(payment, status=Payment.Status.FAILED, code="processor_error", message=error.message)
                return payment
            raise
        if isinstance(result, gateway.Declined):
            if result.intent_id:
                payment.stripe_payment_intent_id = result.intent_id
                payment.save(update_fields=["stripe_payment_intent_id"])
            _release(payment, status=Payment.Status.FAILED, code=result.code, message=result.message)
            return payment
        payment.stripe_payment_intent_id = result.id
        payment.save(update_fields=["stripe_payment_intent_id"])
    return payment_apply_intent(intent=result) or payment


def payment_refresh(*, payment_id: int) -> Payment:
    """Ask Stripe for the current state (return page, after 3-D Secure, reconciliation)."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in Payment.OPEN_STATUSES or not payment.stripe_payment_intent_id:
        return payment
    intent = gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    return payment_apply_intent(intent=intent) or payment


def _adoptable(payment: Payment, intent: gateway.Intent) -> bool:
    """Whether an intent our payment never recorded is the one we created for it (its answer was lost): we sent a
    create, and the amount, currency, customer and our signature all match. Anything else is not ours.

    A payment we already released (reconciliation found no intent in time) can still adopt it: Stripe took the money,
    and settling pays the invoices if they are still open or refunds the share another payment already paid."""
    if payment.charge_attempts < 1 or payment.status == Payment.Status.SUCCEEDED:
        return False
    customer_id = Patient.objects.values_list("stripe_customer_id", flat=True).get(pk=payment.patient_id)
    expected = gateway.payment_signature(payment_id=payment.pk, amount_cents=payment.amount_cents)
    return (
        bool(customer_id)
        and intent.customer_id == customer_id
        and intent.amount_cents == payment.amount_cents
        and intent.currency == "usd"
        and hmac.compare_digest(intent.metadata.get("alma_sig", ""), expected)
    )


def _payment_for_intent(intent: gateway.Intent) -> Payment | None:
    """Our payment for this intent, locked: the one that recorded its id, or one that can adopt it."""
    payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent.id).first()
    if payment is not None:
        return payment
    payment_id = intent.metadata.get("payment_id", "")
    if not (payment_id.isdigit() and len(payment_id) < 12):
        return None
    candidate = (
        Payment.objects.select_for_update()
        .filter(Q(stripe_payment_intent_id__isnull=True) | Q(stripe_payment_intent_id=""), pk=int(payment_id))
        .first()
    )
    if candidate is None:
        # The create that made this intent may have recorded its id while we waited for the row lock.
        return Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent.id).first()
    if not _adoptable(candidate, intent):
        return None
    candidate.stripe_payment_intent_id = intent.id
    candidate.save(update_fields=["stripe_payment_intent_id"])
    audit_record(actor=SYSTEM, action=AuditAction.PAYMENT_INTENT_ADOPTED, obj=candidate, intent_id=intent.id)
    return candidate


def payment_apply_intent(*, intent: gateway.Intent) -> Payment | None:
    """Move our payment to match a PaymentIntent, from any source. Returns None, changing nothing, for intents
    that are not ours (another integration on the account, a forged or foreign event)."""
    from payments.tasks import payment_receipt_task, surplus_refund_task

    with transaction.atomic():
        payment = _payment_for_intent(intent)
        if payment is None:
            logger.warning("payment intent %s is not one of ours; nothing changed", intent.id)
            return None

        if intent.status == "succeeded":
            if payment.status != Payment.Status.SUCCEEDED:
                surplus = _settle(payment)
                enqueue_on_commit(payment_receipt_task, payment.pk)
                if not payment.keep_card:
                    card_forget_later(payment_method_id=payment.stripe_payment_method_id)
                for allocation_id in surplus:
                    enqueue_on_commit(surplus_refund_task, allocation_id)
        elif intent.status in ("requires_payment_method", "canceled"):
            status = Payment.Status.CANCELED if intent.status == "canceled" else Payment.Status.FAILED
            code = intent.failure_code or ("canceled" if status == Payment.Status.CANCELED else "card_declined")
            _release(payment, status=status, code=code, message=gateway.decline_message(code))
        elif intent.status in IN_FLIGHT and payment.status == Payment.Status.CREATED:
            payment.status = Payment.Status.PROCESSING
            payment.save(update_fields=["status"])
    return payment


def payment_abandon(*, payment_id: int, message: str) -> Payment:
    """A payment held but never confirmed as sent to Stripe: adopt the intent if a call got through, else release."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.CREATED or payment.stripe_payment_intent_id:
        return payment
    if payment.charge_attempts > 0:  # a call was made and may have reached Stripe before it failed or timed out
        customer_id = Patient.objects.values_list("stripe_customer_id", flat=True).get(pk=payment.patient_id)
        found = gateway.payment_intent_find(customer_id=customer_id, payment_id=payment.pk)
        if found is not None:
            adopted = payment_apply_intent(intent=found)
            if adopted is not None:
                return adopted
            # An intent names this payment but is not the one we created: a person decides; it stays held.
            payment_flag(
                payment_id=payment_id,
                reason=f"Stripe has an intent ({found.id}) naming this payment that is not ours; it still holds its "
                "invoices.",
            )
            return payment
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status == Payment.Status.CREATED and not payment.stripe_payment_intent_id:
            _release(payment, status=Payment.Status.FAILED, code="not_sent", message=message)
    return payment


UNKNOWN_AT_STRIPE = gettext_noop("The card processor has no record of this payment. Nothing was charged.")


def payment_flag(*, payment_id: int, reason: str) -> bool:
    """Ask a person to look at a payment reconciliation cannot settle. Returns True the first time only."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.attention_at is not None:
            return False
        numbers = list(payment.allocations.order_by("invoice_id").values_list("invoice__number", flat=True))
        payment.attention = f"{reason} Invoices: {', '.join(numbers) or 'none'}."[:300]
        payment.attention_at = timezone.now()
        payment.save(update_fields=["attention", "attention_at"])
        audit_record(
            actor=SYSTEM, action=AuditAction.PAYMENT_NEEDS_ATTENTION, obj=payment, reason=reason, invoices=numbers
        )
    logger.warning("payment %s flagged for ops: %s", payment_id, reason)
    return True


def payment_release_unknown(*, payment_id: int) -> Payment:
    """Stripe says it has no such PaymentIntent. If it knows the patient's customer (so this is the right Stripe
    account and key), no money can have been taken under that intent: release the invoices so the patient can pay,
    and tell ops. If it does not know the customer either, the account or key is wrong, and releasing could lead
    to paying twice: only flag it."""
    payment = Payment.objects.select_related("patient").get(pk=payment_id)
    if payment.status not in Payment.OPEN_STATUSES:
        return payment
    if not gateway.customer_exists(payment.patient.stripe_customer_id):
        payment_flag(
            payment_id=payment_id,
            reason="Stripe knows neither this payment nor the patient's customer: check STRIPE_SECRET_KEY and the "
            "Stripe account before releasing it.",
        )
        return payment
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        _release(payment, status=Payment.Status.FAILED, code="unknown_at_stripe", message=UNKNOWN_AT_STRIPE)
    payment_flag(
        payment_id=payment_id,
        reason="Stripe has no record of this payment's intent; its invoices were released so the patient can pay.",
    )
    return payment


def payment_cancel(*, payment_id: int) -> Payment:
    """Cancel an unfinished PaymentIntent at Stripe (e.g. an abandoned card check) and release the invoices."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in Payment.OPEN_STATUSES or not payment.stripe_payment_intent_id:
        return payment
    intent = gateway.payment_intent_cancel(payment.stripe_payment_intent_id)
    return payment_apply_intent(intent=intent) or payment


def _settle(payment: Payment) -> list[int]:
    """Mark the payment's invoices paid. Returns allocations whose invoice another payment already paid."""
    now = timezone.now()
    surplus: list[int] = []
    allocations = PaymentAllocation.objects.select_for_update().filter(payment=payment).order_by("invoice_id")
    for allocation in allocations:
        invoice = Invoice.objects.select_for_update().get(pk=allocation.invoice_id)
        if allocation.state == State.PENDING:
            allocation.state = State.SETTLED
        elif allocation.state == State.RELEASED:
            # We had given up on this payment, yet Stripe took the money: pay the invoice if it is still open,
            # otherwise this share is a duplicate and goes back to the patient.
            taken = PaymentAllocation.objects.filter(invoice=invoice, state__in=[State.PENDING, State.SETTLED])
            if invoice.status in (Invoice.Status.OPEN,) and not taken.exists():
                allocation.state = State.SETTLED
            else:
                allocation.state = State.SURPLUS
                surplus.append(allocation.pk)
        allocation.save(update_fields=["state"])
        if allocation.state == State.SETTLED and invoice.status != Invoice.Status.PAID:
            invoice.status, invoice.paid_at = Invoice.Status.PAID, now
            invoice.save(update_fields=["status", "paid_at"])
            audit_record(actor=SYSTEM, action=AuditAction.INVOICE_PAID, obj=invoice, payment_id=payment.pk)
            # Paid: automatic charges still scheduled for it (e.g. an autopay retry) will not happen.
            attempts = AutopayAttempt.objects.filter(invoice=invoice, status=AutopayAttempt.Status.SCHEDULED)
            attempts.filter(payment=payment).update(status=AutopayAttempt.Status.SUCCEEDED, finished_at=now)
            attempts.exclude(payment=payment).update(
                status=AutopayAttempt.Status.CANCELED,
                failure_message=gettext_noop("Paid another way."),
                finished_at=now,
            )
    payment.status, payment.succeeded_at = Payment.Status.SUCCEEDED, now
    payment.failure_code = payment.failure_message = ""
    payment.save(update_fields=["status", "succeeded_at", "failure_code", "failure_message"])
    audit_record(
        actor=SYSTEM,
        action=AuditAction.PAYMENT_SUCCEEDED,
        obj=payment,
        amount_cents=payment.amount_cents,
        surplus_allocations=surplus,
    )
    return surplus


def _release(payment: Payment, *, status: str, code: str, message: str) -> None:
    """A failed or canceled payment lets go of its invoices. Never undoes a success."""
    if payment.status not in Payment.OPEN_STATUSES:
        return
    held = PaymentAllocation.objects.select_for_update().filter(payment=payment, state=State.PENDING)
    invoice_ids = list(held.values_list("invoice_id", flat=True))
    held.update(state=State.RELEASED)
    Invoice.objects.filter(pk__in=invoice_ids, status=Invoice.Status.PROCESSING).update(status=Invoice.Status.OPEN)
    payment.status, payment.failure_code, payment.failure_message = status, code[:64], message[:300]
    payment.save(update_fields=["status", "failure_code", "failure_message"])
    audit_record(actor=SYSTEM, action=_RELEASED_ACTIONS[Payment.Status(status)], obj=payment, code=code)
    if not payment.keep_card:
        card_forget_later(payment_method_id=payment.stripe_payment_method_id)
