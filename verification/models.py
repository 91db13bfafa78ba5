"""Pay links (the emailed bearer token, stored hashed), access attempts for the limits, and local SMS codes."""

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
    # Set when the link stops working early, e.g. the phone number on the profile changed.
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "-created_at"])]

    def __str__(self) -> str:
        return f"Pay link #{self.pk} for patient #{self.patient_id}"

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at


class AccessAttempt(models.Model):
    """One step of the phone and code check, for the limits (per patient across links and IPs, and per IP)."""

    class Kind(models.TextChoices):
        PHONE = "phone", "Phone number entered"
        SEND = "send", "Code sent"
        CODE = "code", "Code checked"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    succeeded = models.BooleanField()
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="access_attempts")
    pay_link = models.ForeignKey(PayLink, null=True, on_delete=models.SET_NULL, related_name="attempts")
    ip_address = models.GenericIPAddressField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["patient", "kind", "created_at"]),
            models.Index(fields=["ip_address", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {'ok' if self.succeeded else 'failed'} for patient #{self.patient_id}"


class LocalVerification(models.Model):
    """Development stand-in for a Twilio Verify verification: same rules, code stored hashed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        CANCELED = "canceled", "Canceled"

    phone = models.CharField(max_length=20, db_index=True)  # E.164
    code_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    sends = models.PositiveSmallIntegerField(default=1)
    checks = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Local verification #{self.pk} ({self.status})"
