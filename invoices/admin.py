"""Admin for billing records. Money is read-only once issued; actions go through services (audited)."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError
from alma_billing.core.money import format_cents
from invoices import services
from invoices.models import (
    Coverage,
    EapAuthorization,
    EligibilitySnapshot,
    Invoice,
    Patient,
    Practice,
    Provider,
    TherapySession,
)


def _actor(request: HttpRequest) -> Actor:
    return Actor.staff(request.user, ip=request.META.get("REMOTE_ADDR"))


@admin.register(Practice)
class PracticeAdmin(admin.ModelAdmin):
    list_display = ["name", "autopay_policy"]
    list_filter = ["autopay_policy"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["display_name", "npi", "practice"]
    list_filter = ["practice"]
    search_fields = ["display_name", "npi"]


class CoverageInline(admin.TabularInline):
    model = Coverage
    extra = 0


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "phone", "created_at"]
    search_fields = ["first_name", "last_name", "email", "phone"]
    inlines = [CoverageInline]


@admin.register(EligibilitySnapshot)
class EligibilitySnapshotAdmin(admin.ModelAdmin):
    list_display = ["__str__", "coverage", "status", "plan_active", "copay_cents", "coinsurance_bp"]
    list_filter = ["status", "plan_active"]


@admin.register(EapAuthorization)
class EapAuthorizationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "patient", "sessions_used", "sessions_authorized", "valid_from", "valid_until"]
    list_filter = ["program"]


@admin.register(TherapySession)
class TherapySessionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "patient", "provider", "billing_type", "status", "billing_outcome"]
    list_filter = ["status", "billing_outcome", "billing_type", "provider__practice"]
    readonly_fields = ["status", "completed_at", "billing_outcome", "billing_note"]
    actions = ["mark_completed", "charge_self_pay_rate"]

    @admin.action(description="Mark completed (bills the session)")
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[TherapySession]) -> None:
        done = 0
        for session in queryset:
            try:
                services.session_complete(session_id=session.pk, actor=_actor(request))
                done += 1
            except ServiceError as error:
                self.message_user(request, error.message, messages.ERROR)
        self.message_user(request, f"{done} session(s) completed; invoices are issued in the background.")

    @admin.action(description="Charge the self-pay rate as an out-of-pocket invoice")
    def charge_self_pay_rate(self, request: HttpRequest, queryset: QuerySet[TherapySession]) -> None:
        for session in queryset:
            if not session.self_pay_rate_cents:
                self.message_user(request, f"{session}: set a self-pay rate first.", messages.ERROR)
                continue
            try:
                invoice = services.invoice_charge_self_pay(
                    session_id=session.pk, amount_cents=session.self_pay_rate_cents, actor=_actor(request)
                )
                self.message_user(request, f"{invoice.number} issued for {format_cents(invoice.amount_cents)}.")
            except ServiceError as error:
                self.message_user(request, error.message, messages.ERROR)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "patient", "provider", "amount", "status", "issued_at", "emailed_at"]
    list_filter = ["status", "kind", "practice"]
    search_fields = ["number", "patient__last_name", "patient__email"]
    list_select_related = ["patient", "provider"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invoices are issued by the billing service, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj: Invoice) -> str:
        return format_cents(obj.amount_cents)
