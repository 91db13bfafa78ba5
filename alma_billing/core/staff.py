"""Who staff are: ops see everything; a provider sees only their own patients, sessions, invoices and payments."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from alma_billing.core.audit import Actor
from alma_billing.core.staff_login import staff_client_ip

OPS_GROUP = "Ops"
# Ops staff hold this permission (through the Ops group, alma_billing/core/apps.py); checks ask for it, not for the
# group's name, so a new role gets it by permission.
OPS_PERMISSION = "core.see_all_providers"


def is_ops(user: Any) -> bool:
    return bool(user.is_active and user.has_perm(OPS_PERMISSION))


def provider_of(user: Any) -> Any:
    """The Provider row of a staff user, or None (ops and other staff)."""
    return getattr(user, "provider", None) if user.is_authenticated else None


def scoped_provider(request: HttpRequest) -> Any:
    """The provider whose view is restricted to their own part of shared records; None for ops (who see everything)
    and for staff who are neither (ProviderScopedAdmin already gives them no rows)."""
    if is_ops(request.user):
        return None
    return provider_of(request.user)


def id_param(value: object) -> int | None:
    """A database id from a query parameter, or None for anything else (letters, unicode digits, too big)."""
    text = str(value or "")
    if not (text.isascii() and text.isdigit()) or int(text) > 2**31 - 1:
        return None
    return int(text)


def staff_actor(request: HttpRequest) -> Actor:
    # The proxy-aware address, as for patients and sign-ins: behind a proxy REMOTE_ADDR is the proxy's.
    return Actor.staff(request.user, ip=staff_client_ip(request))


class ProviderScopedAdmin(admin.ModelAdmin):
    """Ops see every row; a provider sees the rows `provider_scope` says are theirs; anyone else sees none.

    A row can be a provider's and still touch another provider's care (a shared patient, a payment covering both
    providers' invoices). `invoice_path` names the relation from the row to invoices: for a provider, searching by
    invoice number matches only their own invoices, so a search for another provider's invoice finds nothing.
    """

    invoice_path: str | None = None

    def provider_scope(self, provider: Any) -> Q:
        return Q(provider=provider)

    def get_search_fields(self, request: HttpRequest) -> Any:
        fields = list(super().get_search_fields(request))
        if self.invoice_path and scoped_provider(request) is not None:
            fields = [f for f in fields if not f.lstrip("^=@").startswith(f"{self.invoice_path}__")]
        return fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        provider = scoped_provider(request)
        term = search_term.strip()
        if not (self.invoice_path and provider is not None and term):
            return results, may_have_duplicates
        # Through the relation, not the Invoice model: the core does not import the apps (docs/architecture.md).
        own = {f"{self.invoice_path}__provider": provider, f"{self.invoice_path}__number__icontains": term}
        return results | queryset.filter(**own), True

    def get_paginator(self, request: HttpRequest, queryset: Any, per_page: int, *args: Any, **kwargs: Any) -> Any:
        # The admin's history page lists who edited a record: another provider's edits of a shared patient would
        # say that the patient sees them. A provider sees their own entries and those of ops.
        if getattr(queryset, "model", None) is LogEntry and scoped_provider(request) is not None:
            queryset = queryset.filter(Q(user=request.user) | Q(user__provider__isnull=True))
        return super().get_paginator(request, queryset, per_page, *args, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if is_ops(request.user):
            return queryset
        provider = provider_of(request.user)
        if provider is None:
            return queryset.none()
        return queryset.filter(pk__in=queryset.filter(self.provider_scope(provider)).values("pk"))

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # billing records are never deleted; they are voided or refunded
