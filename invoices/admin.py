"""The admin providers and ops staff live in. Providers see only their own patients, sessions and invoices; ops see
everything. Money is read-only once issued; every action goes through a service that writes an audit event."""

from collections.abc import Callable
from datetime import date
from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from alma_billing.core.admin import DollarsAdmin, FieldHistoryAdmin, dollars
from alma_billing.core.errors import ServiceError, TransportError
from alma_billing.core.models import AuditEvent
from alma_billing.core.money import format_cents
from alma_billing.core.staff import ProviderScopedAdmin, is_ops, provider_of, scoped_provider, staff_actor
from claims.selectors import claim_number_of
from invoices import services
from invoices.models import (
    Coverage,
    EapAuthorization,
    EligibilitySnapshot,
    Invoice,
    Patient,
    Practice,
    Provider,
    ReminderLog,
    ReminderRun,
    TherapySession,
)
from invoices.selectors import AGING_BUCKETS, issued_within


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


class CoverageInline(admin.TabularInline):
    model = Coverage
    extra = 0


class PatientForm(forms.ModelForm):
    """The preferred language defaults to English when a form (or a script) leaves it out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "preferred_language" in self.fields:
            self.fields["preferred_language"].required = False

    def clean_preferred_language(self) -> str:
        return self.cleaned_data.get("preferred_language") or "en"


EMAIL_BOUNCING = "Email bouncing: update the patient's email"


class EmailBouncingFilter(admin.SimpleListFilter):
    """Issue 15: patients whose address the email service reported bouncing or complained of."""

    title = "email"
    parameter_name = "email_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("bouncing", "Bouncing (update it)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "bouncing":
            return queryset.exclude(email_undeliverable_reason="")
        return queryset


@admin.register(Patient)
class PatientAdmin(FieldHistoryAdmin, PatientScoped):
    patient_path = ""
    form = PatientForm
    list_display = ["__str__", "email", "email_status", "phone", "open_balance", "last_reminder"]
    list_filter = [EmailBouncingFilter]
    search_fields = ["first_name", "last_name", "email", "phone", "invoices__number"]
    invoice_path = "invoices"
    fields = ["first_name", "last_name", "email", "email_status", "phone", "preferred_language", "stripe_customer_id"]
    readonly_fields = ["stripe_customer_id", "email_status"]
    inlines = [CoverageInline]

    @admin.display(description="Email status")
    def email_status(self, obj: Any) -> str:
        if obj is None or not obj.pk or not obj.email_undeliverable_reason:
            return "-" if obj is None or not obj.pk or not obj.email else "OK"
        since = timezone.localtime(obj.email_undeliverable_at) if obj.email_undeliverable_at else None
        return (
            f"{EMAIL_BOUNCING} ({obj.get_email_undeliverable_reason_display().lower()}"
            + (f", since {since:%Y-%m-%d %H:%M}" if since else "")
            + ")"
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        if request.method == "GET":
            patient = self.get_object(request, object_id)
            if patient is not None and patient.email_undeliverable_reason:
                messages.warning(request, f"{EMAIL_BOUNCING}. Saving a new address sends what is open to it.")
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # A provider's figures count only their own invoices and the reminders that named one of them: a shared
        # patient's balance with another provider, or a reminder about it, would tell that the patient sees them.
        share = provider_share(request)
        last = ReminderLog.objects.filter(patient=OuterRef("pk"), status=ReminderLog.Status.SENT).order_by("-sent_on")
        invoices = Invoice.objects.filter(patient=OuterRef("pk"), status=Invoice.Status.OPEN)
        if share is not None:
            last = last.filter(pk__in=share.log_ids)
            invoices = invoices.filter(provider=share.provider)
        open_cents = invoices.order_by().values("patient").annotate(total=Sum("amount_cents")).values("total")
        return (
            super()
            .get_queryset(request)
            .annotate(last_reminder_on=Subquery(last.values("sent_on")[:1]), open_cents=Subquery(open_cents))
        )

    @admin.display(description="Open balance", ordering="open_cents")
    def open_balance(self, obj: Any) -> str:
        return format_cents(obj.open_cents or 0)

    @admin.display(description="Last reminder", ordering="last_reminder_on")
    def last_reminder(self, obj: Any) -> Any:
        return obj.last_reminder_on or "-"

    def save_model(self, request: HttpRequest, obj: Patient, form: Any, change: bool) -> None:
        if not change:
            obj.added_by = provider_of(request.user)
            super().save_model(request, obj, form, change)
            return
        new_phone = str(obj.phone)
        if "phone" in form.changed_data:
            obj.phone = Patient.objects.get(pk=obj.pk).phone  # the service changes it, audited
        super().save_model(request, obj, form, change)
        if "email" in form.changed_data:
            from invoices.deliverability import patient_email_updated

            result = patient_email_updated(patient_id=obj.pk, actor=staff_actor(request))
            if Patient.objects.filter(pk=obj.pk).exclude(email_undeliverable_reason="").exists():
                messages.warning(request, f"{EMAIL_BOUNCING}: the new address is already reported bouncing.")
            elif result.reminder_id is not None:
                messages.info(
                    request, "Email updated. One email listing what is open is on its way to the new address."
                )
        if "phone" in form.changed_data:
            try:
                services.patient_phone_change(patient_id=obj.pk, phone=new_phone, actor=staff_actor(request))
                messages.info(
                    request,
                    "Phone number updated. Old invoice links stopped working; the patient was "
                    "emailed a fresh link if anything is open.",
                )
            except ServiceError as error:
                messages.error(request, error.message)


@admin.register(EligibilitySnapshot)
class EligibilitySnapshotAdmin(DollarsAdmin, FieldHistoryAdmin, PatientScoped):
    patient_path = "coverage__patient"
    list_display = [
        "__str__",
        "coverage",
        "status",
        "plan_active",
        dollars("copay_cents"),
        "coinsurance_bp",
        dollars("deductible_remaining_cents", "Deductible remaining"),
        dollars("oop_max_remaining_cents", "Out-of-pocket max remaining"),
    ]
    list_filter = ["status", "plan_active"]


@admin.register(EapAuthorization)
class EapAuthorizationAdmin(FieldHistoryAdmin, PatientScoped):
    list_display = ["__str__", "patient", "sessions_used", "sessions_authorized", "valid_from", "valid_until"]
    list_filter = ["program"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        provider = scoped_provider(request)
        if provider is None:
            return queryset
        return queryset.annotate(own_sessions=Count("sessions", filter=Q(sessions__provider=provider)))

    @admin.display(description="Sessions with you")
    def own_sessions_used(self, obj: Any) -> int:
        return int(obj.own_sessions or 0)

    # A provider sees the sessions they held under a shared authorization, not the total: the total counts another
    # provider's sessions with the patient.
    def get_list_display(self, request: HttpRequest) -> Any:
        if scoped_provider(request) is None:
            return list(self.list_display)
        return ["own_sessions_used" if f == "sessions_used" else f for f in self.list_display]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["sessions_used"] if obj is not None and scoped_provider(request) is not None else []

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["own_sessions_used"] if obj is not None and scoped_provider(request) is not None else []


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


@admin.register(ReminderRun)
class ReminderRunAdmin(OpsOnlyAdmin):
    list_display = [
        "started_at",
        "as_of",
        "triggered_by",
        "dry_run",
        "status",
        "patients_reminded",
        "invoices_covered",
        "skipped_no_email",
        "skipped_already_today",
        "failures",
    ]
    list_filter = ["status", "dry_run"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are recorded by send_reminders and beat, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReminderLog)
class ReminderLogAdmin(PatientScoped):
    list_display = ["sent_on", "patient", "status", "total", "reason", "sent_at"]
    list_filter = ["status", "sent_on"]
    search_fields = ["patient__last_name", "patient__email"]
    SHOWN = ["sent_on", "patient", "status", "invoices", "total", "reason", "run", "created_at", "sent_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        share = provider_share(request)
        # A reminder that named only another provider's invoices is not this provider's to see.
        return queryset if share is None else queryset.filter(pk__in=share.log_ids)

    def _share_fields(self, request: HttpRequest, names: list[str]) -> list[Any]:
        """For a provider, the invoices and total of a reminder are their own part of it."""
        share = provider_share(request)
        if share is None:
            return names

        @admin.display(description="Total")
        def total(obj: ReminderLog) -> str:
            return format_cents(share.own_cents(obj))

        @admin.display(description="Invoices")
        def invoices(obj: ReminderLog) -> str:
            return ", ".join(share.invoice_numbers[i] for i in share.own_ids(obj)) or "-"

        replace: dict[str, Callable[[ReminderLog], str]] = {"total": total, "invoices": invoices}
        return [replace.get(name, name) for name in names if name != "run"]

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._share_fields(request, [str(name) for name in self.list_display])

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self._share_fields(request, list(self.SHOWN))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description="Invoices")
    def invoices(self, obj: ReminderLog) -> str:
        numbers = Invoice.objects.filter(pk__in=obj.invoice_ids or []).values_list("number", flat=True)
        return ", ".join(numbers) or "-"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Total")
    def total(self, obj: ReminderLog) -> str:
        return format_cents(obj.total_cents)
