"""Payments: one Stripe PaymentIntent each, covering invoices through allocations; webhook events; refunds.

"Impossible to pay twice" is a database rule here: an invoice has at most one live allocation (pending or settled).
"""

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from alma_billing.core.money import format_cents
from invoices.models import Invoice, Patient


class Payment(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", "Created"  # allocations held, PaymentIntent not created yet
        PROCESSING = "processing", "Processing"  # sent to Stripe, waiting (e.g. card authentication)
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    OPEN_STATUSES = (Status.CREATED, Status.PROCESSING)

    class Source(models.TextChoices):
        PATIENT = "patient", "Patient, on the pay page"
        AUTOPAY = "autopay", "Autopay"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="payments")
    amount_cents = models.IntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PATIENT)
    # One per Pay click (a nonce in the card page): a double submission finds the same payment.
    attempt_key = models.CharField(max_length=64, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    stripe_payment_method_id = models.CharField(max_length=64, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)  # plain words, shown to the patient
    refunded_cents = models.IntegerField(default=0)
    disputed_at = models.DateTimeField(null=True, blank=True)
    dispute_status = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    receipt_emailed_at = models.DateTimeField(null=True, blank=True)
    keep_card = models.BooleanField(default=False)  # the patient chose to keep the card (autopay)
    # Calls made to create the PaymentIntent. Above one, an earlier call may have reached Stripe before its
    # worker died, so the next call looks for that intent before creating one.
    charge_attempts = models.PositiveSmallIntegerField(default=0)
    # Set when reconciliation cannot settle this payment on its own (Stripe does not know the intent, or has not
    # answered for too long): ops see it on the dashboard with the invoices named.
    # db_default on the columns this release adds: the previous release's code, still running during a rolling
    # deploy, inserts rows without them.
    attention = models.CharField(max_length=300, blank=True, db_default="")
    attention_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["patient", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(refunded_cents__gte=0) & Q(refunded_cents__lte=models.F("amount_cents")),
                name="payment_refunded_within_amount",
            ),
        ]

    def __str__(self) -> str:
        # No amount here: a payment can cover several providers' invoices, and providers see only their share.
        return f"{self.reference} ({self.get_status_display()})"

    @property
    def reference(self) -> str:
        return f"PAY-{self.pk:07d}"


class PaymentAllocation(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # the invoice is held for this payment
        SETTLED = "settled", "Settled"  # this payment paid the invoice
        RELEASED = "released", "Released"  # the payment failed; the invoice is open again
        SURPLUS = "surplus", "Surplus (refunded)"  # paid twice: this share was refunded automatically

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount_cents = models.IntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    refunded_cents = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payment", "invoice"], name="allocation_once_per_payment"),
            # The core guarantee: two live payments can never hold or settle the same invoice.
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(state__in=["pending", "settled"]),
                name="one_live_allocation_per_invoice",
            ),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="allocation_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{format_cents(self.amount_cents)} of payment #{self.payment_id} to invoice #{self.invoice_id}"


class StripeEvent(models.Model):
    """A webhook event as received (after its signature was checked); the event id makes redelivery a no-op."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        NOT_OURS = "not_ours", "Not ours (changed nothing)"
        IGNORED = "ignored", "Nothing to do"
        FAILED = "failed", "Failed (Stripe retries it)"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.APPLIED, db_default=Outcome.APPLIED
    )
    error = models.TextField(blank=True)  # why applying it last failed: an exception class and message, no payload
    attempts = models.PositiveIntegerField(default=1, db_default=1)  # deliveries that tried to apply it

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class CardToDetach(models.Model):
    """Outbox: a saved card we promised not to keep, recorded with the change that ended its use. The task that
    detaches it at Stripe deletes the row; reconciliation detaches whatever a lost task left."""

    payment_method_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Card {self.payment_method_id} to detach"


class Refund(models.Model):
    class Reason(models.TextChoices):
        DUPLICATE = "duplicate", "Paid twice (automatic)"
        STAFF = "staff", "Refunded by staff"
        STRIPE = "stripe", "Refunded outside the app (dashboard)"
        CLAIM = "claim", "The plan decided the patient owes less (automatic)"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.IntegerField()
    reason = models.CharField(max_length=10, choices=Reason.choices)
    note = models.TextField(blank=True)
    stripe_refund_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="refund_amount_gt_0")]

    def __str__(self) -> str:
        return f"Refund of {format_cents(self.amount_cents)} on payment #{self.payment_id}"


class AutopayEnrollment(models.Model):
    """A card the patient saved for autopay, with their consent (P6). FSA/HSA/HRA cards are refused (P7)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="autopay_enrollments")
    stripe_payment_method_id = models.CharField(max_length=64)
    card_brand = models.CharField(max_length=20)
    card_last4 = models.CharField(max_length=4)
    card_funding = models.CharField(max_length=20, blank=True)
    consent_text = models.TextField()  # exactly what the patient agreed to, in consent_language
    consent_version = models.CharField(max_length=16, default="2025-1")  # payments.autopay.CONSENT_VERSION
    consent_language = models.CharField(max_length=8, default="en")  # the language of the page they agreed on
    consented_at = models.DateTimeField(auto_now_add=True)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-consented_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient"], condition=Q(ended_at__isnull=True), name="one_active_autopay_card_per_patient"
            )
        ]

    def __str__(self) -> str:
        return f"Autopay for patient #{self.patient_id}: {self.card_brand} ending {self.card_last4}"

    @property
    def active(self) -> bool:
        return self.ended_at is None


class AutopayAttemptQuerySet(models.QuerySet["AutopayAttempt"]):
    def cancel_scheduled(self, *, reason: str, at: datetime | None = None) -> int:
        """The scheduled charges among these will not happen (paid another way, voided, autopay ended): the one
        way a charge is called off before it runs. Returns how many stopped."""
        return self.filter(status=AutopayAttempt.Status.SCHEDULED).update(
            status=AutopayAttempt.Status.CANCELED, failure_message=reason, finished_at=at or timezone.now()
        )


class AutopayAttempt(models.Model):
    """One scheduled automatic charge of an invoice. (invoice, number) is unique: a task run twice charges once."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")  # paid another way, voided, or autopay ended

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="autopay_attempts")
    enrollment = models.ForeignKey(AutopayEnrollment, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveSmallIntegerField()  # 1 = first charge, then the retries
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    payment = models.OneToOneField(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    failure_message = models.CharField(max_length=300, blank=True)
    notice_sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = AutopayAttemptQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [models.UniqueConstraint(fields=["invoice", "number"], name="autopay_attempt_once")]
        indexes = [models.Index(fields=["status", "scheduled_for"])]

    def __str__(self) -> str:
        return f"Autopay attempt {self.number} for invoice #{self.invoice_id} ({self.status})"


class ReceiptLinkRequest(models.Model):
    """One request on the public receipts page (/pay/receipts/): what its limits count (per address, per network),
    and the outbox the link emails are sent from. The address itself is never stored, only a keyed digest of it,
    and `patient_ids` is empty when no patient has that address: the row and the work look the same either way."""

    address_digest = models.CharField(max_length=64)
    network = models.GenericIPAddressField(null=True)  # an IPv4 address or an IPv6 /64, as the access limits count
    patient_ids = models.JSONField(default=list)  # patients with that address when it was asked for
    created_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)  # the emails went out (or there were none to send)

    class Meta:
        indexes = [
            models.Index(fields=["address_digest", "created_at"]),
            models.Index(fields=["network", "created_at"]),
            models.Index(fields=["processed_at", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Receipts link request #{self.pk}"
