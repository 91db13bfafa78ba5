"""Admin for reminder runs and the reminders they sent (a provider sees only their own part of each)."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from alma_billing.core.money import format_cents
from invoices.admin.scoping import OpsOnlyAdmin, PatientScoped, provider_share
from invoices.models import (
    Invoice,
    ReminderLog,
    ReminderRun,
)


@admin.register(ReminderRun)
class ReminderRunAdmin(OpsOnlyAdmin):
    list_display = [
        "started_at",
        "as_of",
        "triggered_by",
        "dry_run",
        "status",
        "patients_reminded",
        "invoices_covered",
        "skipped_no_email",
        "skipped_already_today",
        "failures",
    ]
    list_filter = ["status", "dry_run"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are recorded by send_reminders and beat, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReminderLog)
class ReminderLogAdmin(PatientScoped):
    list_display = ["sent_on", "patient", "status", "total", "reason", "sent_at"]
    list_filter = ["status", "sent_on"]
    search_fields = ["patient__last_name", "patient__email"]
    SHOWN = ["sent_on", "patient", "status", "invoices", "total", "reason", "run", "created_at", "sent_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        share = provider_share(request)
        # A reminder that named only another provider's invoices is not this provider's to see.
        return queryset if share is None else queryset.filter(pk__in=share.log_ids)

    def _share_fields(self, request: HttpRequest, names: list[str]) -> list[Any]:
        """For a provider, the invoices and total of a reminder are their own part of it."""
        share = provider_share(request)
        if share is None:
            return names

        @admin.display(description="Total")
        def total(obj: ReminderLog) -> str:
            return format_cents(share.own_cents(obj))

        @admin.display(description="Invoices")
        def invoices(obj: ReminderLog) -> str:
            return ", ".join(share.invoice_numbers[i] for i in share.own_ids(obj)) or "-"

        replace: dict[str, Callable[[ReminderLog], str]] = {"total": total, "invoices": invoices}
        return [replace.get(name, name) for name in names if name != "run"]

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._share_fields(request, [str(name) for name in self.list_display])

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self._share_fields(request, list(self.SHOWN))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description="Invoices")
    def invoices(self, obj: ReminderLog) -> str:
        numbers = Invoice.objects.filter(pk__in=obj.invoice_ids or []).values_list("number", flat=True)
        return ", ".join(numbers) or "-"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Total")
    def total(self, obj: ReminderLog) -> str:
        return format_cents(obj.total_cents)
