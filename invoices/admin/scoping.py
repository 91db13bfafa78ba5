"""What each kind of staff sees: ops-only admins, and a provider's share of their patients' rows."""

from datetime import date
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from alma_billing.core.staff import ProviderScopedAdmin, is_ops, provider_of, scoped_provider
from invoices.models import (
    Coverage,
    EapAuthorization,
    Invoice,
    Patient,
    Provider,
    ReminderLog,
)


class OpsOnlyAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_ops(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_ops(request.user)

    # Editing needs ops and the model's own permission (the Ops group has invoices' add/change permissions).
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_ops(request.user) and super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_ops(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def own_patients(provider: Any) -> QuerySet[Patient]:
    return Patient.objects.filter(Q(sessions__provider=provider) | Q(added_by=provider)).distinct()


class ProviderShare:
    """One provider's part of their patients' reminders: which reminder rows named one of their invoices, and
    what of each row's total was theirs. A reminder lists every open invoice of the patient, including another
    provider's: that part is not shown to this provider. Built once per admin page, in Python, since the invoice
    ids of a reminder are a JSON list (which SQLite cannot search)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @cached_property
    def invoice_cents(self) -> dict[int, int]:
        return dict(Invoice.objects.filter(provider=self.provider).values_list("pk", "amount_cents"))

    @cached_property
    def invoice_numbers(self) -> dict[int, str]:
        return dict(Invoice.objects.filter(provider=self.provider).values_list("pk", "number"))

    @cached_property
    def _logs(self) -> list[tuple[int, int, date, str, list[int]]]:
        rows = ReminderLog.objects.filter(patient__in=own_patients(self.provider)).values_list(
            "pk", "patient_id", "sent_on", "status", "invoice_ids"
        )
        own = self.invoice_cents
        return [(pk, p, day, status, [i for i in ids or [] if i in own]) for pk, p, day, status, ids in rows]

    @cached_property
    def log_ids(self) -> list[int]:
        """The reminders that named at least one of this provider's invoices."""
        return [pk for pk, _, _, _, mine in self._logs if mine]

    @cached_property
    def last_sent_by_invoice(self) -> dict[int, date]:
        last: dict[int, date] = {}
        for _, _, day, status, mine in self._logs:
            if status == ReminderLog.Status.SENT:
                for invoice_id in mine:
                    last[invoice_id] = max(day, last.get(invoice_id, day))
        return last

    def own_ids(self, log: ReminderLog) -> list[int]:
        return [i for i in log.invoice_ids or [] if i in self.invoice_cents]

    def own_cents(self, log: ReminderLog) -> int:
        return sum(self.invoice_cents[i] for i in self.own_ids(log))


def provider_share(request: HttpRequest) -> ProviderShare | None:
    """The request's ProviderShare (cached on the request), or None for ops."""
    provider = scoped_provider(request)
    if provider is None:
        return None
    share = getattr(request, "_alma_provider_share", None)
    if share is None:
        share = ProviderShare(provider)
        request._alma_provider_share = share  # type: ignore[attr-defined]
    return share


def scoped_choices(db_field: Any, request: HttpRequest) -> QuerySet[Any] | None:
    """For a provider, the rows a foreign-key dropdown may offer: only their own patients' records."""
    provider = provider_of(request.user)
    if provider is None or is_ops(request.user):
        return None
    model = db_field.remote_field.model
    if model is Patient:
        return own_patients(provider)
    if model is Coverage:
        return Coverage.objects.filter(patient__in=own_patients(provider))
    if model is EapAuthorization:
        return EapAuthorization.objects.filter(patient__in=own_patients(provider))
    if model is Provider:
        return Provider.objects.filter(pk=provider.pk)
    return None


class PatientScoped(ProviderScopedAdmin):
    patient_path = "patient"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        choices = scoped_choices(db_field, request)
        if choices is not None:
            kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def provider_scope(self, provider: Any) -> Q:
        prefix = f"{self.patient_path}__" if self.patient_path else ""
        return Q(**{f"{prefix}sessions__provider": provider}) | Q(**{f"{prefix}added_by": provider})
