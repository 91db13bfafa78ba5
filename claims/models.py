"""Insurance claims (one per insurance session) and the X12 835 remittances that settle them (P13)."""

from django.db import models
from django.db.models import Q


def claim_number_for(session_id: int) -> str:
    """The patient control number we send on the claim; the clearinghouse sends it back as CLP01."""
    return f"ALMA{session_id:08d}"


class Claim(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted (the invoice is an estimate)"
        CONFIRMED = "confirmed", "Confirmed by the plan"
        ADJUSTED = "adjusted", "Adjusted to the plan's decision"
        DENIED = "denied", "Denied by the plan"
        REVERSED = "reversed", "Reversed by the plan"

    session = models.OneToOneField("invoices.TherapySession", on_delete=models.PROTECT, related_name="claim")
    claim_number = models.CharField(max_length=38, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SUBMITTED)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # The plan's latest word on what the patient owes (CLP05), once a remittance said it.
    plan_responsibility_cents = models.IntegerField(null=True, blank=True)
    # Denials, and what the importer could not settle on its own: a person (provider and ops) must look.
    attention = models.TextField(blank=True)
    # Accumulators: the eligibility check the estimate used, and what the plan's standing decision applied to the
    # deductible (CAS PR 1); with plan_responsibility_cents (toward the out-of-pocket maximum) they replace the
    # estimate's figures when later sessions on the same check are estimated (invoices.selectors).
    eligibility_snapshot = models.ForeignKey(
        "invoices.EligibilitySnapshot", null=True, blank=True, on_delete=models.PROTECT, related_name="claims"
    )
    plan_deductible_cents = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(plan_responsibility_cents__gte=0) | Q(plan_responsibility_cents__isnull=True),
                name="claim_plan_responsibility_gte_0",
            ),
            models.CheckConstraint(
                condition=Q(plan_deductible_cents__gte=0) | Q(plan_deductible_cents__isnull=True),
                name="claim_plan_deductible_gte_0",
            ),
        ]

    def __str__(self) -> str:
        return f"Claim {self.claim_number}"


class Remittance(models.Model):
    """One imported 835 file, kept as received."""

    file_name = models.CharField(max_length=255, blank=True)
    raw_text = models.TextField()
    trace_number = models.CharField("check or EFT trace (TRN02)", max_length=50)
    payer_name = models.CharField(max_length=200, blank=True)
    payer_id = models.CharField(max_length=50, blank=True)
    payment_cents = models.IntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    summary = models.JSONField(default=dict)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"Remittance {self.trace_number} from {self.payer_name or self.payer_id or 'a payer'}"


class ClaimPayment(models.Model):
    """One CLP line of a remittance: the plan's decision on one claim, and what the true-up did with it."""

    class Outcome(models.TextChoices):
        ADJUSTED_UP = "adjusted_up", "Adjusted up: an adjustment invoice"
        REDUCED = "reduced", "Reduced"
        REFUNDED = "refunded", "Refunded to the card"
        CONFIRMED = "confirmed", "Confirmed: the estimate was right"
        DENIED = "denied", "Denied: for a person"
        REVERSED = "reversed", "Reversed"
        UNMATCHED = "unmatched", "Unmatched: no such claim"
        NEEDS_ATTENTION = "needs_attention", "Needs a person"

    remittance = models.ForeignKey(Remittance, on_delete=models.PROTECT, related_name="lines")
    claim = models.ForeignKey(Claim, null=True, blank=True, on_delete=models.PROTECT, related_name="payments")
    trace_number = models.CharField(max_length=50)
    claim_number = models.CharField("CLP01", max_length=38)
    status_code = models.CharField("CLP02", max_length=2)
    charge_cents = models.IntegerField("CLP03 charge")
    paid_cents = models.IntegerField("CLP04 paid by the plan")
    patient_responsibility_cents = models.IntegerField("CLP05 patient responsibility")
    payer_claim_number = models.CharField("CLP07", max_length=50)
    # [{"group": "PR", "reason": "1", "amount_cents": 5000}, ...] as the plan sent them (CAS).
    adjustments = models.JSONField(default=list)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    note = models.TextField(blank=True)
    adjustment_invoice = models.ForeignKey(
        "invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="claim_payments"
    )
    # Money to give back to the card; `refund` is set once Stripe made it (after the import commits).
    refund_cents = models.IntegerField(default=0)
    refund = models.ForeignKey("payments.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # The dedupe key: the same decision imported twice (the same file, or a resent one) is one row.
            models.UniqueConstraint(
                fields=["trace_number", "claim_number", "payer_claim_number"], name="claim_payment_once"
            ),
            models.CheckConstraint(condition=Q(refund_cents__gte=0), name="claim_payment_refund_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.claim_number} in {self.trace_number}: {self.get_outcome_display()}"


class InvoiceCredit(models.Model):
    """Part of an open invoice the plan's decision took off (P13 "less"): the record behind Invoice.credited_cents.
    The issued amount is never edited; a later decision (a reversal, a correction) cancels the credit instead of
    deleting it."""

    invoice = models.ForeignKey("invoices.Invoice", on_delete=models.PROTECT, related_name="credits")
    claim = models.ForeignKey(Claim, on_delete=models.PROTECT, related_name="credits")
    claim_payment = models.ForeignKey(ClaimPayment, on_delete=models.PROTECT, related_name="credits")
    amount_cents = models.IntegerField()
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    canceled_by = models.ForeignKey(
        ClaimPayment, null=True, blank=True, on_delete=models.PROTECT, related_name="canceled_credits"
    )

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="invoice_credit_amount_gt_0")]

    def __str__(self) -> str:
        return f"Credit of {self.amount_cents} cents on invoice #{self.invoice_id}"
