"""Admin for patients and their coverage: profiles, eligibility checks, EAP authorizations."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.utils import timezone

from alma_billing.core.admin import DollarsAdmin, FieldHistoryAdmin, dollars
from alma_billing.core.errors import ServiceError
from alma_billing.core.money import format_cents
from alma_billing.core.staff import provider_of, scoped_provider, staff_actor
from invoices import services
from invoices.admin.scoping import PatientScoped, provider_share
from invoices.models import (
    Coverage,
    EapAuthorization,
    EligibilitySnapshot,
    Invoice,
    Patient,
    ReminderLog,
)


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
