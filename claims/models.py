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

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(plan_responsibility_cents__gte=0) | Q(plan_responsibility_cents__isnull=True),
                name="claim_plan_responsibility_gte_0",
            )
        ]

    def __str__(self) -> str:
        return f"Claim {self.claim_number}"
