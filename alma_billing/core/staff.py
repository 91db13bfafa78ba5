"""Who staff are: ops see everything; a provider sees only their own patients, sessions, invoices and payments."""

from typing import Any

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from alma_billing.core.audit import Actor
from alma_billing.core.staff_login import staff_client_ip

OPS_GROUP = "Ops"


def is_ops(user: Any) -> bool:
    return bool(user.is_active and (user.is_superuser or user.groups.filter(name=OPS_GROUP).exists()))


def provider_of(user: Any) -> Any:
    """The Provider row of a staff user, or None (ops and other staff)."""
    return getattr(user, "provider", None) if user.is_authenticated else None


def staff_actor(request: HttpRequest) -> Actor:
    # The proxy-aware address, as for patients and sign-ins: behind a proxy REMOTE_ADDR is the proxy's.
    return Actor.staff(request.user, ip=staff_client_ip(request))


class ProviderScopedAdmin(admin.ModelAdmin):
    """Ops see every row; a provider sees the rows `provider_scope` says are theirs; anyone else sees none."""

    def provider_scope(self, provider: Any) -> Q:
        return Q(provider=provider)

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
