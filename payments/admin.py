"""Admin for payments: allocations, Stripe ids, refunds (whole or one invoice's share), webhook events."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from alma_billing.core.admin import DollarsAdmin, ReadOnlyAdmin, dollars
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.money import format_cents
from alma_billing.core.staff import ProviderScopedAdmin, id_param, is_ops, provider_of, scoped_provider, staff_actor
from invoices.models import Practice
from payments import services
from payments.models import AutopayAttempt, AutopayEnrollment, Payment, PaymentAllocation, Refund, StripeEvent


class OwnInvoicesOnly:
    """In a payment that also paid another provider's invoice, a provider sees only their own invoices' rows."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        provider = provider_of(request.user)
        if is_ops(request.user) or provider is None:
            return queryset
        return queryset.filter(invoice__provider=provider)


class AllocationInline(OwnInvoicesOnly, ReadOnlyAdmin, DollarsAdmin, admin.TabularInline):
    model = PaymentAllocation
    fields = ("invoice", dollars("amount_cents"), "state", dollars("refunded_cents"))
    extra = 0


class RefundInline(OwnInvoicesOnly, ReadOnlyAdmin, DollarsAdmin, admin.TabularInline):
    model = Refund
    fields = ("created_at", "invoice", dollars("amount_cents"), "reason", "note", "stripe_refund_id", "created_by")
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
class PaymentAdmin(ReadOnlyAdmin, ProviderScopedAdmin):
    list_display = ["reference", "patient", "amount", "status", "source", "card", "created_at", "disputed_at"]
    list_filter = ["status", "source", ("disputed_at", admin.EmptyFieldListFilter)]
    search_fields = ["stripe_payment_intent_id", "patient__last_name", "patient__email", "allocations__invoice__number"]
    invoice_path = "allocations__invoice"  # a provider's search matches only their own invoices' numbers
    list_select_related = ["patient"]
    date_hierarchy = "created_at"
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

    def provider_scope(self, provider: Any) -> Q:
        return Q(allocations__invoice__provider=provider)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if is_ops(request.user):
            return list(self.readonly_fields)
        # The payment's total may include another provider's invoices: providers see their share in the rows.
        return [f for f in self.readonly_fields if f not in ("amount", "refunded", "refund_link")]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self.get_readonly_fields(request, obj)

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        if is_ops(request.user):
            return list(self.list_display)
        return [f for f in self.list_display if f != "amount"]

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
                    actor=staff_actor(request),
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
class StripeEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["received_at", "type", "event_id", "outcome", "processed_at", "attempts"]
    list_filter = ["outcome", "type"]  # "Not ours": signed events about intents we never created
    search_fields = ["event_id"]


class PracticeOfPatientFilter(admin.SimpleListFilter):
    title = "practice"
    parameter_name = "practice"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        practices = Practice.objects.exclude(autopay_policy=Practice.AutopayPolicy.OFF).order_by("name")
        provider = provider_of(request.user)
        if provider is not None and not is_ops(request.user):
            practices = practices.filter(pk=provider.practice_id)
        return [(str(p.pk), p.name) for p in practices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        practice_id = id_param(self.value())
        provider = scoped_provider(request)
        if practice_id is None or (provider is not None and practice_id != provider.practice_id):
            # Filtering a provider's patients by another practice would tell who else they see.
            return queryset.none()
        return queryset.filter(patient__sessions__provider__practice_id=practice_id).distinct()


class LastOutcomeFilter(admin.SimpleListFilter):
    title = "last attempt"
    parameter_name = "last_outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in AutopayAttempt.Status.choices] + [("none", "No attempt yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "none":
            return queryset.filter(last_status__isnull=True)
        return queryset.filter(last_status=self.value()) if self.value() else queryset


@admin.register(AutopayEnrollment)
class AutopayEnrollmentAdmin(ReadOnlyAdmin, ProviderScopedAdmin):
    list_display = ["patient", "card", "active", "consented_at", "last_attempt_at", "last_status"]
    list_filter = [("ended_at", admin.EmptyFieldListFilter), PracticeOfPatientFilter, LastOutcomeFilter]
    search_fields = ["patient__last_name", "patient__email"]
    readonly_fields = ["patient", "card", "card_funding", "consent_text", "consented_at", "consent_ip", "ended_at"]
    exclude = ["stripe_payment_method_id", "card_brand", "card_last4"]

    def provider_scope(self, provider: Any) -> Q:
        return Q(patient__sessions__provider=provider)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        last = (
            AutopayAttempt.objects.filter(enrollment=OuterRef("pk"))
            .exclude(status=AutopayAttempt.Status.SCHEDULED)
            .order_by("-finished_at")
        )
        provider = scoped_provider(request)
        if provider is not None:
            last = last.filter(invoice__provider=provider)  # the outcome of a charge for their own invoice
        return (
            super()
            .get_queryset(request)
            .select_related("patient")
            .annotate(
                last_status=Subquery(last.values("status")[:1]),
                last_attempt_at=Subquery(last.values("finished_at")[:1]),
            )
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(self.readonly_fields)
        if scoped_provider(request) is not None:
            fields.remove("consent_text")  # it names every practice the patient agreed to be charged for
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("payments.view_autopayenrollment") or bool(provider_of(request.user))

    @admin.display(description="Card")
    def card(self, obj: AutopayEnrollment) -> str:
        return f"{obj.card_brand} •••• {obj.card_last4}"

    @admin.display(description="Active", boolean=True)
    def active(self, obj: AutopayEnrollment) -> bool:
        return obj.ended_at is None

    @admin.display(description="Last attempt")
    def last_attempt_at(self, obj: Any) -> Any:
        return obj.last_attempt_at or "-"

    @admin.display(description="Outcome")
    def last_status(self, obj: Any) -> Any:
        return obj.last_status or "-"


@admin.register(AutopayAttempt)
class AutopayAttemptAdmin(ReadOnlyAdmin, ProviderScopedAdmin):
    list_display = ["invoice", "patient", "number", "scheduled_for", "status", "failure_message", "payment"]
    list_filter = ["status", ("invoice__practice", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["invoice__number", "invoice__patient__last_name"]
    list_select_related = ["invoice__patient", "payment"]

    def provider_scope(self, provider: Any) -> Q:
        return Q(invoice__provider=provider)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("payments.view_autopayattempt") or bool(provider_of(request.user))

    @admin.display(description="Patient")
    def patient(self, obj: AutopayAttempt) -> Any:
        return obj.invoice.patient
