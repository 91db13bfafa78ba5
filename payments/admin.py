"""Admin for payments: allocations, Stripe ids, refunds (whole or one invoice's share), webhook events."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.money import format_cents
from payments import services
from payments.models import Payment, PaymentAllocation, Refund, StripeEvent


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AllocationInline(ReadOnly, admin.TabularInline):
    model = PaymentAllocation
    fields = ("invoice", "amount_cents", "state", "refunded_cents")
    readonly_fields = fields
    extra = 0


class RefundInline(ReadOnly, admin.TabularInline):
    model = Refund
    fields = ("created_at", "invoice", "amount_cents", "reason", "note", "stripe_refund_id", "created_by")
    readonly_fields = fields
    extra = 0


class RefundForm(forms.Form):
    invoice = forms.ChoiceField(label="What to refund")
    note = forms.CharField(
        label="Why (kept with the refund and the audit trail)", widget=forms.Textarea, max_length=500
    )

    def __init__(self, *args: Any, payment: Payment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", f"The whole payment ({format_cents(payment.amount_cents - payment.refunded_cents)} left)")]
        for allocation in payment.allocations.filter(state=PaymentAllocation.State.SETTLED).select_related("invoice"):
            left = allocation.amount_cents - allocation.refunded_cents
            if left > 0:
                choices.append((str(allocation.invoice_id), f"{allocation.invoice.number} only ({format_cents(left)})"))
        field = self.fields["invoice"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices


@admin.register(Payment)
class PaymentAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["reference", "patient", "amount", "status", "source", "card", "created_at", "disputed_at"]
    list_filter = ["status", "source", ("disputed_at", admin.EmptyFieldListFilter)]
    search_fields = ["stripe_payment_intent_id", "patient__last_name", "patient__email", "allocations__invoice__number"]
    list_select_related = ["patient"]
    readonly_fields = [
        "patient",
        "amount",
        "status",
        "source",
        "stripe_payment_intent_id",
        "stripe_payment_method_id",
        "card",
        "failure_code",
        "failure_message",
        "refunded",
        "disputed_at",
        "dispute_status",
        "created_at",
        "succeeded_at",
        "receipt_emailed_at",
        "refund_link",
    ]
    exclude = ["attempt_key", "amount_cents", "refunded_cents", "card_brand", "card_last4", "keep_card"]
    inlines = [AllocationInline, RefundInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("payments.view_payment")  # viewing the page; nothing on it is editable

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj: Payment) -> str:
        return format_cents(obj.amount_cents)

    @admin.display(description="Refunded")
    def refunded(self, obj: Payment) -> str:
        return format_cents(obj.refunded_cents)

    @admin.display(description="Card")
    def card(self, obj: Payment) -> str:
        return f"{obj.card_brand} •••• {obj.card_last4}" if obj.card_last4 else "-"

    @admin.display(description="Refund")
    def refund_link(self, obj: Payment) -> str:
        if obj.status != Payment.Status.SUCCEEDED or obj.refunded_cents >= obj.amount_cents:
            return "-"
        return format_html(
            '<a class="button" href="{}">Refund…</a>', reverse("admin:payments_payment_refund", args=[obj.pk])
        )

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:payment_id>/refund/", self.admin_site.admin_view(self.refund_view), name="payments_payment_refund"
            )
        ]
        return extra + super().get_urls()

    def refund_view(self, request: HttpRequest, payment_id: int) -> HttpResponse:
        if not request.user.has_perm("payments.add_refund"):
            messages.error(request, "Only ops staff can refund payments.")
            return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment_id]))
        payment = get_object_or_404(Payment, pk=payment_id)
        form = RefundForm(request.POST or None, payment=payment)
        if request.method == "POST" and form.is_valid():
            invoice = form.cleaned_data["invoice"]
            try:
                services.refund_issue(
                    payment_id=payment.pk,
                    invoice_id=int(invoice) if invoice else None,
                    actor=Actor.staff(request.user, ip=request.META.get("REMOTE_ADDR")),
                    note=form.cleaned_data["note"],
                )
            except (ServiceError, TransportError) as error:
                messages.error(request, f"{payment.reference}: {error.message}")
            else:
                messages.success(request, f"{payment.reference}: refund sent to Stripe; the invoice(s) are void.")
                return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund {payment.reference}",
            "form": form,
            "payment": payment,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/refund.html", context)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["received_at", "type", "event_id", "processed_at"]
    list_filter = ["type"]
    search_fields = ["event_id"]
