"""The audit trail: one row per state change, written by the service that made it."""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who acted when there is no staff user: "system", "patient:<id>", "stripe".
    actor_label = models.CharField(max_length=64, default="system")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # Ids and amounts only: no clinical details; field history ("record.changed") keeps a patient's contact details
    # masked (alma_billing/core/audit.py MASKED_FIELDS).
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]
        # Staff rights that belong to no one model; the Ops group holds them (alma_billing/core/apps.py).
        permissions = [
            ("export_auditevent", "Can export the audit trail as CSV"),
            ("see_all_providers", "Sees every provider's records (ops staff)"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id} by {self.actor_label}"
