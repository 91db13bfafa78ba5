"""Admin for therapy sessions: record them, complete them (which bills them), and see how each was billed."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from alma_billing.core.admin import DollarsAdmin, FieldHistoryAdmin, dollars
from alma_billing.core.errors import ServiceError
from alma_billing.core.money import format_cents
from alma_billing.core.staff import ProviderScopedAdmin, is_ops, provider_of, staff_actor
from claims.selectors import claim_number_of
from invoices import services
from invoices.admin.scoping import scoped_choices
from invoices.models import (
    TherapySession,
)

ALLOWED_AMOUNT = dollars("allowed_amount_cents", "Allowed amount")
SELF_PAY_RATE = dollars("self_pay_rate_cents", "Self-pay rate")


@admin.register(TherapySession)
class TherapySessionAdmin(DollarsAdmin, FieldHistoryAdmin, ProviderScopedAdmin):
    invoice_path = "invoice"
    list_display = ["__str__", "patient", "provider", "billing_type", "status", "billing_outcome", "billing_note"]
    list_filter = ["status", "billing_outcome", "billing_type", ("provider", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["patient__last_name", "patient__email", "invoice__number"]
    actions = ["mark_completed", "charge_self_pay_rate"]
    list_select_related = ["patient", "provider"]

    @staticmethod
    def _billed(obj: Any) -> bool:
        return obj is not None and obj.billing_outcome != TherapySession.Outcome.PENDING

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields: list[Any] = ["status", "completed_at", "billing_outcome", "billing_note", "claim_number"]
        if self._billed(obj):
            fields += [
                "patient",
                "provider",
                "date_of_service",
                "cpt_code",
                "billing_type",
                ALLOWED_AMOUNT,
                SELF_PAY_RATE,
                "eap_authorization",
            ]  # billed: money is read-only
        return fields

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        excluded = [] if is_ops(request.user) else ["provider"]
        if self._billed(obj):
            excluded += ["allowed_amount_cents", "self_pay_rate_cents"]  # shown in dollars, read-only
        return excluded

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        choices = scoped_choices(db_field, request)
        if choices is not None:
            kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: TherapySession, form: Any, change: bool) -> None:
        provider = provider_of(request.user)
        if not is_ops(request.user) and provider is not None:
            obj.provider = provider
        super().save_model(request, obj, form, change)

    @admin.display(description="Claim number")
    def claim_number(self, obj: TherapySession) -> str:
        return claim_number_of(obj)

    @admin.action(description="Mark completed (bills the session)")
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[TherapySession]) -> None:
        done = 0
        for session in queryset:
            try:
                services.session_complete(session_id=session.pk, actor=staff_actor(request))
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
                    session_id=session.pk, amount_cents=session.self_pay_rate_cents, actor=staff_actor(request)
                )
                self.message_user(request, f"{invoice.number} issued for {format_cents(invoice.amount_cents)}.")
            except ServiceError as error:
                self.message_user(request, error.message, messages.ERROR)
