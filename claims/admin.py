"""Claims and remittances in the admin: read-only; providers see their own sessions' claims, ops see all."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from alma_billing.core.admin import DollarsAdmin, ReadOnlyAdmin, dollars
from alma_billing.core.staff import ProviderScopedAdmin, is_ops, staff_actor
from claims.models import Claim, ClaimPayment, InvoiceCredit, Remittance
from claims.services import remittance_import
from claims.x12 import RemittanceFileError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class RemittanceUploadForm(forms.Form):
    file = forms.FileField(label="835 file")
    dry_run = forms.BooleanField(label="Dry run: show what it would do, change nothing", required=False)


PLAN_RESPONSIBILITY = dollars("plan_responsibility_cents", "Plan responsibility")


class ClaimLineInline(ReadOnlyAdmin, admin.TabularInline):
    """The plan's decisions on this claim, as the remittances said them, and what the import did: the provider's
    own remittance lines (the remittance itself names other providers' claims, so it is ops only)."""

    model = ClaimPayment
    fk_name = "claim"
    verbose_name = "remittance line"
    fields = (
        "trace_number", "payer_claim_number", "status_code", dollars("patient_responsibility_cents"), "outcome",
        "note", "adjustment_invoice", dollars("refund_cents", "Refund"), "created_at",
    )  # fmt: skip
    extra = 0


class InvoiceCreditInline(ReadOnlyAdmin, admin.TabularInline):
    model = InvoiceCredit
    fk_name = "claim"
    fields = ("invoice", dollars("amount_cents", "Amount"), "reason", "created_at", "canceled_at", "canceled_by")
    extra = 0


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin, DollarsAdmin, ProviderScopedAdmin):
    """Claims are opened by billing and decided by remittances, never typed in."""

    list_display = ["claim_number", "session", "status", PLAN_RESPONSIBILITY, "decided_at", "attention"]
    list_filter = ["status", ("attention", admin.EmptyFieldListFilter)]
    search_fields = ["claim_number"]
    list_select_related = ["session"]
    fields = (
        "claim_number",
        "session",
        "status",
        "created_at",
        "decided_at",
        PLAN_RESPONSIBILITY,
        dollars("plan_deductible_cents", "Plan deductible applied"),
        "eligibility_snapshot",
        "attention",
    )
    inlines = [ClaimLineInline, InvoiceCreditInline]

    def provider_scope(self, provider: Any) -> Q:
        return Q(session__provider=provider)


class ClaimPaymentInline(ReadOnlyAdmin, DollarsAdmin, admin.TabularInline):
    model = ClaimPayment
    fields = (
        "claim_number",
        "status_code",
        dollars("patient_responsibility_cents", "Patient responsibility"),
        "outcome",
        "note",
        "adjustment_invoice",
    )
    extra = 0


@admin.register(Remittance)
class RemittanceAdmin(ReadOnlyAdmin, DollarsAdmin, admin.ModelAdmin):
    """Ops only: a remittance names claims of every provider. Imported with `manage.py import_remittance`."""

    list_display = ["trace_number", "payer_name", "file_name", "received_at", "claim_outcomes"]
    search_fields = ["trace_number", "lines__claim_number"]
    fields = (
        "file_name",
        "trace_number",
        "payer_name",
        "payer_id",
        dollars("payment_cents", "Payment"),
        "received_at",
        "summary",
    )
    inlines = [ClaimPaymentInline]
    change_list_template = "admin/claims/remittance_change_list.html"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("lines")

    @admin.display(description="Each claim's outcome")
    def claim_outcomes(self, obj: Remittance) -> str:
        return "; ".join(f"{line.claim_number}: {line.get_outcome_display()}" for line in obj.lines.all()) or "-"

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="claims_remittance_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """The ops upload page: the same import as `manage.py import_remittance`, one file at a time."""
        if not is_ops(request.user):
            messages.error(request, "Only ops staff import remittances.")
            return HttpResponseRedirect(reverse("admin:index"))
        form = RemittanceUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > MAX_UPLOAD_BYTES:
                    raise RemittanceFileError("ISA segment: the file is larger than 20 MB; split it.")
                raw_text = upload.read().decode("ascii")
                summary = remittance_import(
                    raw_text=raw_text,
                    file_name=upload.name,
                    dry_run=form.cleaned_data["dry_run"],
                    actor=staff_actor(request),
                )
            except UnicodeDecodeError:
                messages.error(request, f"{upload.name}: not imported: an X12 file is plain ASCII.")
            except RemittanceFileError as error:
                messages.error(request, f"{upload.name}: not imported, nothing changed: {error}")
            else:
                counts = ", ".join(f"{count} {words}" for words, count in summary.counts().items())
                prefix = "dry run, nothing changed" if summary.dry_run else "imported"
                messages.success(request, f"{upload.name}: {prefix}: {counts}")
                if summary.refunds_waiting:
                    messages.warning(
                        request, f"{summary.refunds_waiting} refund(s) wait for Stripe; the next import retries."
                    )
                return HttpResponseRedirect(reverse("admin:claims_remittance_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a remittance (X12 835)",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/claims/remittance_import.html", context)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_ops(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_ops(request.user)
