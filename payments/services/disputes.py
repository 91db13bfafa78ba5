"""Card disputes: Stripe tells us a cardholder disputed a payment; staff see it on the payment and its invoices."""

import logging

from django.db import transaction
from django.utils import timezone

from alma_billing.core.audit import Actor, AuditAction, audit_record
from invoices.models import Invoice
from payments.models import Payment, PaymentAllocation

logger = logging.getLogger(__name__)


def payment_record_dispute(*, payment_intent_id: str, status: str) -> bool:
    """A card dispute: the payment and its invoices are flagged for staff. False when the intent is not ours."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=payment_intent_id).first()
        if payment is None:
            logger.warning("dispute on payment intent %s that is not ours", payment_intent_id)
            return False
        first = payment.disputed_at is None
        payment.disputed_at = payment.disputed_at or timezone.now()
        payment.dispute_status = status[:40]
        payment.save(update_fields=["disputed_at", "dispute_status"])
        Invoice.objects.filter(
            allocations__payment=payment, allocations__state=PaymentAllocation.State.SETTLED, disputed_at__isnull=True
        ).update(disputed_at=payment.disputed_at)
        if first:
            audit_record(actor=Actor(label="stripe"), action=AuditAction.PAYMENT_DISPUTED, obj=payment, status=status)
    return True
