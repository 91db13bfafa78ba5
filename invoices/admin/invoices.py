"""Admin for invoices: aging, discrepancy and amount filters, void and note actions, the explanation (P2)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.models import AuditEvent
from alma_billing.core.money import format_cents
from alma_billing.core.staff import ProviderScopedAdmin, staff_actor
from claims.selectors import claim_number_of
from invoices import services
from invoices.admin.scoping import provider_share
from invoices.models import (
    Invoice,
    ReminderLog,
)
from invoices.selectors import AGING_BUCKETS, issued_within


class AgeFilter(admin.SimpleListFilter):
    """The dashboard's aging buckets, as a filter on the invoice list."""

    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(index), label) for index, (label, _, _) in enumerate(AGING_BUCKETS)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in {str(index) for index in range(len(AGING_BUCKETS))}:
            return queryset
        _, low, high = AGING_BUCKETS[int(str(self.value()))]
        return queryset.filter(issued_within(low=low, high=high, now=timezone.now()))


class DiscrepancyFilter(admin.SimpleListFilter):
    title = "outside payment reported"
    parameter_name = "discrepancy"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Reported, still open (to reconcile)"), ("any", "Reported (any status)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "open":
            return queryset.filter(outside_payment_reported_at__isnull=False, status=Invoice.Status.OPEN)
        if self.value() == "any":
            return queryset.filter(outside_payment_reported_at__isnull=False)
        return queryset


class AmountFilter(admin.SimpleListFilter):
    title = "amount"
    parameter_name = "amount"
    BANDS = [("0-5000", 0, 5_000), ("5000-20000", 5_000, 20_000), ("20000-", 20_000, None)]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        def label(low: int, high: int | None) -> str:
            if high is None:
                return f"{format_cents(low)} or more"
            return f"{format_cents(low)} to under {format_cents(high)}"

        return [(key, label(low, high)) for key, low, high in self.BANDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        for key, low, high in self.BANDS:
            if self.value() == key:
                queryset = queryset.filter(amount_cents__gte=low)
                return queryset if high is None else queryset.filter(amount_cents__lt=high)
        return queryset


class VoidForm(forms.Form):
    reason = forms.CharField(
        label="Why void (kept with the invoice and in the audit trail)",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        error_messages={"required": "Give a reason for voiding; it is kept with the invoice."},
    )


class NoteActionForm(ActionForm):
    note = forms.CharField(required=False, label="Reason / note", widget=forms.TextInput(attrs={"size": 40}))


@admin.register(Invoice)
class InvoiceAdmin(ProviderScopedAdmin):
    list_display = ["number", "patient", "provider", "amount", "status", "age_days", "last_reminder", "flags"]
    list_filter = [
        "status",
        AgeFilter,
        AmountFilter,
        DiscrepancyFilter,
        ("disputed_at", admin.EmptyFieldListFilter),
        ("practice", admin.RelatedOnlyFieldListFilter),
        ("provider", admin.RelatedOnlyFieldListFilter),
        "kind",
    ]
    search_fields = [
        "number",
        "patient__first_name",
        "patient__last_name",
        "patient__email",
        "allocations__payment__stripe_payment_intent_id",
    ]
    list_select_related = ["patient", "provider"]
    date_hierarchy = "issued_at"
    action_form = NoteActionForm
    actions = ["resend_link", "record_outside_payment", "void_invoices"]
    readonly_fields = (
        "number",
        "patient",
        "provider",
        "practice",
        "session",
        "claim_number",
        "kind",
        "amount",
        "status",
        "explanation",
        "issued_at",
        "emailed_at",
        "email_problem",
        "paid_at",
        "voided_at",
        "void_reason",
        "disputed_at",
        "outside_payment_reported_at",
        "outside_payment_note",
        "payments",
        "audit_trail",
    )
    fields = readonly_fields  # every field is shown, none is editable

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        last = ReminderLog.objects.filter(patient=OuterRef("patient_id"), status=ReminderLog.Status.SENT).order_by(
            "-sent_on"
        )
        return super().get_queryset(request).annotate(last_reminder_on=Subquery(last.values("sent_on")[:1]))

    def get_list_display(self, request: HttpRequest) -> Any:
        share = provider_share(request)
        if share is None:
            return list(self.list_display)

        @admin.display(description="Last reminder")
        def last_reminder(obj: Invoice) -> Any:
            return share.last_sent_by_invoice.get(obj.pk) or "-"  # a reminder that named this invoice

        return [last_reminder if f == "last_reminder" else f for f in self.list_display]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invoices are issued by the billing service, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # every field is read-only: the page opens with the view permission and has no Save button

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Resending a link or recording an outside payment: staff who may change invoices (providers, ops)."""
        return bool(request.user.has_perm("invoices.change_invoice"))

    def has_void_permission(self, request: HttpRequest) -> bool:
        # Invoices are never deleted; voiding is how one is taken off what is owed, so the delete right grants it
        # (the Ops group has it, providers do not).
        return bool(request.user.has_perm("invoices.delete_invoice"))

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj: Invoice) -> str:
        return format_cents(obj.amount_cents)

    @admin.display(description="Age (days)", ordering="issued_at")
    def age_days(self, obj: Invoice) -> int:
        return (timezone.now() - obj.issued_at).days

    @admin.display(description="Last reminder")
    def last_reminder(self, obj: Any) -> Any:
        return obj.last_reminder_on or "-"

    @admin.display(description="Flags")
    def flags(self, obj: Invoice) -> str:
        flags = []
        if obj.outside_payment_reported_at and obj.status == Invoice.Status.OPEN:
            flags.append("paid outside? (reconcile)")
        if obj.disputed_at:
            flags.append("card dispute")
        if obj.email_problem:
            flags.append("no email")
        return ", ".join(flags) or "-"

    @admin.display(description="Claim number")
    def claim_number(self, obj: Invoice) -> str:
        return claim_number_of(obj.session)

    @admin.display(description="Why this amount")
    def explanation(self, obj: Invoice) -> str:
        from invoices.explain import explanation_lines

        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((line,) for line in explanation_lines(obj.calculation)))
        )

    @admin.display(description="Payments")
    def payments(self, obj: Invoice) -> str:
        rows = [
            (
                reverse("admin:payments_payment_change", args=[a.payment_id]),
                a.payment.reference,
                a.payment.get_status_display(),
                format_cents(a.amount_cents),
                a.get_state_display(),
            )
            for a in obj.allocations.select_related("payment").order_by("payment_id")
        ]
        if not rows:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> {} · {} · {}</li>', rows))

    @admin.display(description="Audit trail")
    def audit_trail(self, obj: Invoice) -> str:
        events = AuditEvent.objects.filter(object_type="invoices.invoice", object_id=str(obj.pk)).order_by("created_at")
        rows = [
            (f"{e.created_at:%Y-%m-%d %H:%M}", e.action, e.actor.get_username() if e.actor else e.actor_label)
            for e in events.select_related("actor")
        ]
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{} · {} · {}</li>", rows)) if rows else "-"

    @admin.action(description="Resend the invoice link to the patient", permissions=["act"])
    def resend_link(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        for invoice in queryset:
            try:
                services.invoice_resend_link(invoice_id=invoice.pk, actor=staff_actor(request))
                self.message_user(request, f"{invoice.number}: a fresh link was emailed.")
            except (ServiceError, TransportError) as error:
                self.message_user(request, error.message, messages.ERROR)

    @admin.action(description="Record that the patient says they paid outside Alma (needs a note)", permissions=["act"])
    def record_outside_payment(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        note = request.POST.get("note", "")
        for invoice in queryset:
            try:
                services.invoice_report_outside_payment(invoice_id=invoice.pk, note=note, actor=staff_actor(request))
                self.message_user(
                    request, f"{invoice.number}: recorded. It stays open and reminders continue until ops reconcile it."
                )
            except ServiceError as error:
                self.message_user(request, f"{invoice.number}: {error.message}", messages.ERROR)

    @admin.action(description="Void… (ops; asks for a reason on the next page)", permissions=["void"])
    def void_invoices(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse | None:
        """First POST (from the list): a confirmation page with the reason. Second POST (`post=yes`, CSRF-checked
        like every admin POST): void them. Going back or leaving the page changes nothing."""
        if request.POST.get("post") == "yes":
            form = VoidForm(request.POST)
            if form.is_valid():
                self._void(request, queryset, form.cleaned_data["reason"])
                return None  # back to the list, with the messages
        else:
            form = VoidForm(initial={"reason": request.POST.get("note", "")[:500]})
        invoices = list(queryset.select_related("patient").order_by("number"))
        for invoice in invoices:
            invoice.amount_display = format_cents(invoice.amount_cents)  # type: ignore[attr-defined]
        context = {
            **self.admin_site.each_context(request),
            "title": "Void invoices? Confirm with a reason",
            "invoices": invoices,
            "form": form,
            "opts": self.model._meta,
            "cancel_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/invoices/void_confirmation.html", context)

    def _void(self, request: HttpRequest, queryset: QuerySet[Invoice], reason: str) -> None:
        for invoice in queryset:
            try:
                services.invoice_void(invoice_id=invoice.pk, reason=reason, actor=staff_actor(request))
                self.message_user(request, f"{invoice.number} voided.")
            except ServiceError as error:
                self.message_user(request, error.message, messages.ERROR)
