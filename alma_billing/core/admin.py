"""Admin building blocks shared by every app: money typed and shown in dollars, field history of what staff edit,
and the audit trail (read-only, exported as CSV for reviewers)."""

from datetime import date
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.options import BaseModelAdmin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from alma_billing.core.audit import (
    AuditAction,
    audit_csv_lines,
    audit_deletion,
    audit_field_changes,
    audit_record,
    field_values,
)
from alma_billing.core.models import AuditEvent
from alma_billing.core.money import DollarsField, format_cents
from alma_billing.core.staff import id_param, staff_actor
from invoices.models import Coverage, EligibilitySnapshot, Invoice, Patient, TherapySession
from payments.models import Payment

# Money in the admin ------------------------------------------------------------------------------------------------


def dollars_label(field: Any) -> str:
    """ "copay cents" -> "Copay"; "out-of-pocket max remaining (cents)" -> "Out-of-pocket max remaining"."""
    text = str(field.verbose_name)
    for suffix in (" (cents)", " cents"):
        text = text.removesuffix(suffix)
    return text[:1].upper() + text[1:]


def dollars(field_name: str, description: str | None = None) -> Any:
    """A list column or read-only field showing a `*_cents` field as "$12.34" (sorted by the field itself).

    Typed `Any`: the admin takes callables in `fields`/`readonly_fields`, its type stubs only names."""

    def display(obj: Any) -> str:
        value = getattr(obj, field_name)
        return "-" if value is None else format_cents(value)

    display.__name__ = field_name.removesuffix("_cents")
    label = description or field_name.removesuffix("_cents").replace("_", " ").capitalize()
    return admin.display(description=label, ordering=field_name)(display)


class DollarsAdmin(BaseModelAdmin):
    """Every editable `*_cents` column is typed in dollars (`DollarsField`); lists and read-only fields use
    `dollars(...)`. Fields that may be negative are named in `negative_cents_fields`."""

    negative_cents_fields: tuple[str, ...] = ()

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, models.IntegerField) and db_field.name.endswith("_cents") and not db_field.choices:
            return DollarsField(
                required=not db_field.blank,
                label=dollars_label(db_field),
                help_text=db_field.help_text or "In dollars, like 12.34.",
                allow_negative=db_field.name in self.negative_cents_fields,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)


# Read-only records --------------------------------------------------------------------------------------------------


class ReadOnlyAdmin(BaseModelAdmin):
    """Rows the app writes and staff only read (payments, claims, reminder runs, the audit trail): never added,
    changed or deleted here, whatever the user's permissions; the view permission opens the page, with no Save
    button. The `fields` an admin lists are all read-only, so it lists them once."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields or super().get_readonly_fields(request, obj)


# Field history -----------------------------------------------------------------------------------------------------


def _snapshots(request: HttpRequest) -> dict[tuple[str, Any], dict[str, Any]]:
    found = getattr(request, "_alma_field_snapshots", None)
    if found is None:
        found = {}
        request._alma_field_snapshots = found  # type: ignore[attr-defined]
    return found


def _key(obj: models.Model) -> tuple[str, Any]:
    return obj._meta.label_lower, obj.pk


class FieldHistoryAdmin(admin.ModelAdmin):
    """Every field staff change here (and in inlines) is an audit event "record.changed" with who, when, and each
    field's before and after; additions are "record.added", inline deletions "record.deleted". Written inside the
    admin's own transaction, after everything the save did (services included), from the database's values."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None and request.method == "POST":
            _snapshots(request)[_key(obj)] = field_values(obj)  # before the form writes on it
        return obj

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        audit_field_changes(actor=staff_actor(request), obj=obj, before=None)
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        before = _snapshots(request).get(_key(obj))
        if before is not None:
            audit_field_changes(actor=staff_actor(request), obj=obj, before=before)
        return entry

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        model = formset.model
        # A deleted instance loses its pk, so remember each form's by the instance itself.
        pks = {id(f.instance): f.instance.pk for f in formset.forms if f.instance.pk is not None}
        before = {obj.pk: obj for obj in model._default_manager.filter(pk__in=list(pks.values()))}
        super().save_formset(request, form, formset, change)
        actor = staff_actor(request)
        for obj in formset.new_objects:
            audit_field_changes(actor=actor, obj=obj, before=None)
        for obj, _changed in formset.changed_objects:
            if obj.pk in before:
                audit_field_changes(actor=actor, obj=obj, before=field_values(before[obj.pk]))
        for obj in formset.deleted_objects:
            original = before.get(pks.get(id(obj)))
            if original is not None:
                audit_deletion(actor=actor, obj=original)


# The audit trail ---------------------------------------------------------------------------------------------------

EXPORT_PERMISSION = "core.export_auditevent"


class AuditExportForm(forms.Form):
    """What to export. Every filter is optional; together they narrow the rows (AND)."""

    date_from = forms.DateField(required=False, label="From (YYYY-MM-DD)", input_formats=["%Y-%m-%d"])
    date_to = forms.DateField(required=False, label="To, inclusive (YYYY-MM-DD)", input_formats=["%Y-%m-%d"])
    patient = forms.CharField(required=False, max_length=12, label="Patient id")
    invoice = forms.CharField(required=False, max_length=64, label="Invoice number or id")
    staff_user = forms.CharField(required=False, max_length=150, label="Staff username")

    def clean_patient(self) -> int | None:
        text = self.cleaned_data["patient"].strip()
        if not text:
            return None
        patient_id = id_param(text)
        if patient_id is None or not Patient.objects.filter(pk=patient_id).exists():
            raise forms.ValidationError("No patient with this id: enter the number from the patient's admin page.")
        return patient_id

    def clean_invoice(self) -> int | None:
        text = self.cleaned_data["invoice"].strip()
        if not text:
            return None
        invoice_id = id_param(text)
        match = Q(number=text) if invoice_id is None else Q(number=text) | Q(pk=invoice_id)
        found = Invoice.objects.filter(match).values_list("pk", flat=True).first()
        if found is None:
            raise forms.ValidationError("No invoice with this number or id.")
        return found

    def clean_staff_user(self) -> Any:
        text = self.cleaned_data["staff_user"].strip()
        if not text:
            return None
        user = get_user_model()._default_manager.filter(username=text, is_staff=True).first()
        if user is None:
            raise forms.ValidationError("No staff user with this username.")
        return user

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def events(self) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        events = AuditEvent.objects.select_related("actor").order_by("created_at", "id")
        if data.get("date_from"):
            events = events.filter(created_at__date__gte=data["date_from"])
        if data.get("date_to"):
            events = events.filter(created_at__date__lte=data["date_to"])
        if data.get("staff_user") is not None:
            events = events.filter(actor=data["staff_user"])
        if data.get("patient") is not None:
            events = events.filter(patient_events(data["patient"]))
        if data.get("invoice") is not None:
            events = events.filter(invoice_events(data["invoice"]))
        return events

    def described(self) -> dict[str, Any]:
        """The filters as the export's own audit event records them (ids, never names)."""
        data = self.cleaned_data
        user = data.get("staff_user")
        return {
            "date_from": data["date_from"].isoformat() if isinstance(data.get("date_from"), date) else None,
            "date_to": data["date_to"].isoformat() if isinstance(data.get("date_to"), date) else None,
            "patient_id": data.get("patient"),
            "invoice_id": data.get("invoice"),
            "staff_user_id": user.pk if user is not None else None,
        }


def _of(object_type: str, ids: Any) -> Q:
    return Q(object_type=object_type, object_id__in=[str(pk) for pk in ids])


def patient_events(patient_id: int) -> Q:
    """Events about a patient: their record, coverage, eligibility checks, sessions, invoices and payments, and
    what they did themselves on the pay pages."""
    ids = lambda qs: qs.values_list("pk", flat=True)  # noqa: E731
    return (
        Q(object_type="invoices.patient", object_id=str(patient_id))
        | Q(actor_label=f"patient:{patient_id}")
        | _of("invoices.coverage", ids(Coverage.objects.filter(patient_id=patient_id)))
        | _of("invoices.eligibilitysnapshot", ids(EligibilitySnapshot.objects.filter(coverage__patient_id=patient_id)))
        | _of("invoices.therapysession", ids(TherapySession.objects.filter(patient_id=patient_id)))
        | _of("invoices.invoice", ids(Invoice.objects.filter(patient_id=patient_id)))
        | _of("payments.payment", ids(Payment.objects.filter(patient_id=patient_id)))
    )


def invoice_events(invoice_id: int) -> Q:
    """Events about an invoice and the payments that covered it."""
    payments = Payment.objects.filter(allocations__invoice_id=invoice_id).values_list("pk", flat=True)
    return Q(object_type="invoices.invoice", object_id=str(invoice_id)) | _of("payments.payment", payments)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is written by services, never typed or removed."""

    list_display = ["created_at", "action", "object_type", "object_id", "actor_label", "ip_address"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id", "action"]
    date_hierarchy = "created_at"
    change_list_template = "admin/core/auditevent/change_list.html"
    actions = None

    def has_export_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(EXPORT_PERMISSION))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.export_view)
        return [path("export/", view, name="core_auditevent_export"), *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """GET: the filter form; GET with `export`: the CSV, streamed row by row. Reading only, so no CSRF."""
        if not self.has_export_permission(request):
            raise PermissionDenied("Only ops staff may export the audit trail.")
        form = AuditExportForm(request.GET if "export" in request.GET else None)
        if form.is_bound and form.is_valid():
            user = cast(models.Model, request.user)
            audit_record(actor=staff_actor(request), action=AuditAction.AUDIT_EXPORTED, obj=user, **form.described())
            rows = audit_csv_lines(form.events().iterator(chunk_size=2000))
            response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
            stamp = timezone.localdate().isoformat()
            response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
            response["Cache-Control"] = "no-store"
            return response
        context = {
            **self.admin_site.each_context(request),
            "title": "Export the audit trail (CSV)",
            "form": form,
            "opts": self.model._meta,
        }
        status = 400 if form.is_bound else 200
        return TemplateResponse(request, "admin/core/auditevent/export.html", context, status=status)
