"""Admin for practices and providers."""

from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest

from alma_billing.core.admin import FieldHistoryAdmin
from alma_billing.core.staff import ProviderScopedAdmin, is_ops
from invoices.admin.scoping import OpsOnlyAdmin
from invoices.models import (
    Practice,
    Provider,
)


@admin.register(Practice)
class PracticeAdmin(FieldHistoryAdmin, OpsOnlyAdmin):
    list_display = ["name", "autopay_policy"]
    list_filter = ["autopay_policy"]


@admin.register(Provider)
class ProviderAdmin(FieldHistoryAdmin, ProviderScopedAdmin):
    list_display = ["display_name", "npi", "practice"]
    list_filter = [("practice", admin.RelatedOnlyFieldListFilter)]  # a provider is offered only their practice
    search_fields = ["display_name", "npi"]

    def provider_scope(self, provider: Any) -> Q:
        return Q(pk=provider.pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if is_ops(request.user) else ["user", "practice", "npi"]
