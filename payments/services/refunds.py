"""Refunds: a duplicate payment's surplus, a claim's true-up (P13), staff refunds, and refunds made at Stripe."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_record
from alma_billing.core.errors import ServiceError
from invoices.models import Invoice
from payments.gateways import stripe as gateway
from payments.models import Payment, PaymentAllocation, Refund

State = PaymentAllocation.State


def surplus_refund(*, allocation_id: int) -> Refund | None:
    """Refund the share of a payment that paid an invoice someone else had already paid. Once."""
    with transaction.atomic():
        allocation = PaymentAllocation.objects.select_for_update().select_related("payment").get(pk=allocation_id)
        if allocation.state != State.SURPLUS or allocation.refunded_cents >= allocation.amount_cents:
            return None
        amount = allocation.amount_cents - allocation.refunded_cents
        return _refund(
            payment=allocation.payment,
            allocation=allocation,
            amount_cents=amount,
            reason=Refund.Reason.DUPLICATE,
            key=f"surplus-{allocation.pk}",
            actor=SYSTEM,
            note="Paid twice; refunded automatically.",
        )


def _refundable_cents(payment: Payment, allocation: PaymentAllocation) -> int:
    """What can still go back for one invoice of a payment: never more than is left on the payment itself, so
    refunds made in the Stripe dashboard count too."""
    return min(allocation.amount_cents - allocation.refunded_cents, payment.amount_cents - payment.refunded_cents)


def refund_for_claim(*, invoice_ids: list[int], amount_cents: int, key: str, note: str) -> list[Refund]:
    """P13: the plan decided the patient owes less than they paid. Give the difference back to the card(s) that paid
    these invoices, newest payment first; the invoices stay paid. Call inside the caller's transaction (which locks
    what asked for the refund); the Stripe idempotency key is `key` and the allocation's id."""
    refunds, left = [], amount_cents
    allocations = (
        PaymentAllocation.objects.select_for_update(of=("self",))
        .select_related("payment")
        .filter(invoice_id__in=invoice_ids, state=State.SETTLED)
        .order_by("-id")
    )
    for allocation in allocations:
        payment = allocation.payment
        room = _refundable_cents(payment, allocation)
        take = min(room, left)
        if take <= 0:
            continue
        refunds.append(
            _refund(
                payment=payment,
                allocation=allocation,
                amount_cents=take,
                reason=Refund.Reason.CLAIM,
                key=f"{key}-{allocation.pk}",
                actor=SYSTEM,
                note=note,
            )
        )
        left -= take
        if left == 0:
            break
    return refunds


def refund_issue(*, payment_id: int, invoice_id: int | None, actor: Actor, note: str) -> Refund:
    """Staff refund a payment's share for one invoice, or everything not yet refunded. The invoices become void.

    Each invoice's refund is its own transaction, so a failure part-way keeps the refunds already made on record.
    """
    if not note.strip():
        raise ServiceError("Say why the money is going back (it is kept with the refund).")
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.SUCCEEDED:
        raise ServiceError(f"{payment.reference} has not succeeded, so there is nothing to refund.")
    allocations = PaymentAllocation.objects.filter(payment=payment, state=State.SETTLED)
    if invoice_id is not None:
        allocations = allocations.filter(invoice_id=invoice_id)
    refunds = []
    for allocation_id in allocations.order_by("invoice_id").values_list("id", flat=True):
        refund = _refund_allocation(payment_id=payment.pk, allocation_id=allocation_id, actor=actor, note=note)
        if refund is not None:
            refunds.append(refund)
    if not refunds:
        raise ServiceError(f"{payment.reference} has nothing left to refund for that choice.")
    return refunds[-1]


def _refund_allocation(*, payment_id: int, allocation_id: int, actor: Actor, note: str) -> Refund | None:
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        allocation = PaymentAllocation.objects.select_for_update().get(pk=allocation_id)
        amount = _refundable_cents(payment, allocation)
        if amount <= 0:
            return None
        refund = _refund(
            payment=payment,
            allocation=allocation,
            amount_cents=amount,
            reason=Refund.Reason.STAFF,
            key=f"staff-{allocation.pk}-{allocation.refunded_cents}",
            actor=actor,
            note=note,
        )
        Invoice.objects.filter(pk=allocation.invoice_id).update(
            status=Invoice.Status.VOID, voided_at=timezone.now(), void_reason=f"Refunded: {note}"
        )
    return refund


def _refund(
    *,
    payment: Payment,
    allocation: PaymentAllocation,
    amount_cents: int,
    reason: str,
    key: str,
    actor: Actor,
    note: str,
) -> Refund:
    refund_id = gateway.refund_create(
        payment_intent_id=payment.stripe_payment_intent_id or "",
        amount_cents=amount_cents,
        refund_key=key,
        metadata={"payment_id": str(payment.pk), "invoice_id": str(allocation.invoice_id), "reason": reason},
    )
    refund = Refund.objects.create(
        payment=payment,
        invoice_id=allocation.invoice_id,
        amount_cents=amount_cents,
        reason=reason,
        note=note,
        stripe_refund_id=refund_id,
        created_by=actor.user,
    )
    PaymentAllocation.objects.filter(pk=allocation.pk).update(refunded_cents=F("refunded_cents") + amount_cents)
    Payment.objects.filter(pk=payment.pk).update(refunded_cents=F("refunded_cents") + amount_cents)
    audit_record(
        actor=actor,
        action=AuditAction.PAYMENT_REFUNDED,
        obj=payment,
        amount_cents=amount_cents,
        invoice_id=allocation.invoice_id,
        reason=reason,
    )
    return refund


def payment_record_refunded_total(*, payment_intent_id: str, refunded_cents: int) -> bool:
    """A refund made outside the app (the Stripe dashboard): keep our total in step, never lowering it.
    Returns False when the intent is not one of ours."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=payment_intent_id).first()
        if payment is None:
            return False
        if refunded_cents <= payment.refunded_cents:
            return True
        difference = min(refunded_cents, payment.amount_cents) - payment.refunded_cents
        if difference <= 0:  # Stripe's total is over the payment's amount, which we already recorded in full
            return True
        Refund.objects.create(
            payment=payment,
            amount_cents=difference,
            reason=Refund.Reason.STRIPE,
            note="Refund made in the Stripe dashboard.",
        )
        payment.refunded_cents += difference
        payment.save(update_fields=["refunded_cents"])
        audit_record(
            actor=Actor(label="stripe"),
            action=AuditAction.PAYMENT_REFUNDED,
            obj=payment,
            amount_cents=difference,
            reason=Refund.Reason.STRIPE,
        )
    return True
