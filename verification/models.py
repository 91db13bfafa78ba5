"""Pay links: the emailed bearer token, stored only as a hash, that opens the phone check (P4)."""

from django.db import models
from django.utils import timezone

from invoices.models import Invoice, Patient


class PayLink(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the token; the token is never stored
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="pay_links")
    # The invoice whose email carried the link; the link opens all of the patient's open invoices.
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="pay_links")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["patient", "-created_at"])]

    def __str__(self) -> str:
        return f"Pay link #{self.pk} for patient #{self.patient_id}"

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at
