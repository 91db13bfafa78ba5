"""Claims and remittances in the admin: read-only; providers see their own sessions' claims, ops see all."""

from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest

from alma_billing.core.staff import ProviderScopedAdmin, is_ops
from claims.models import Claim, ClaimPayment, Remittance


def claim_number_of(session: Any) -> str:
    """The session's claim number for admin pages, or "-" (self-pay, covered EAP, not billed yet)."""
    claim = Claim.objects.filter(session_id=getattr(session, "pk", None)).only("claim_number").first()
    return claim.claim_number if claim else "-"


@admin.register(Claim)
class ClaimAdmin(ProviderScopedAdmin):
    list_display = ["claim_number", "session", "status", "plan_responsibility_cents", "decided_at", "attention"]
    list_filter = ["status"]
    search_fields = ["claim_number"]
    list_select_related = ["session"]
    readonly_fields = (
        "claim_number",
        "session",
        "status",
        "created_at",
        "decided_at",
        "plan_responsibility_cents",
        "attention",
    )
    fields = readonly_fields

    def provider_scope(self, provider: Any) -> Q:
        return Q(session__provider=provider)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # claims are opened by billing, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ClaimPaymentInline(admin.TabularInline):
    model = ClaimPayment
    fields = ("claim_number", "status_code", "patient_responsibility_cents", "outcome", "note", "adjustment_invoice")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Remittance)
class RemittanceAdmin(admin.ModelAdmin):
    """Ops only: a remittance names claims of every provider."""

    list_display = ["trace_number", "payer_name", "file_name", "received_at", "summary"]
    search_fields = ["trace_number", "lines__claim_number"]
    readonly_fields = ("file_name", "trace_number", "payer_name", "payer_id", "payment_cents", "received_at", "summary")
    fields = readonly_fields
    inlines = [ClaimPaymentInline]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_ops(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_ops(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # imported with `manage.py import_remittance`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
