"""The ops dashboard: open balance by age, reminder runs, autopay failures and what needs a person.

Above the apps (docs/architecture.md): it reads invoices, payments and claims together.
"""

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from alma_billing.core.money import format_cents
from alma_billing.core.staff import is_ops
from claims.models import Claim
from claims.selectors import claims_waiting
from invoices.models import Invoice, Patient, ReminderLog, ReminderRun, TherapySession
from invoices.selectors import open_balance_by_age
from payments.models import Payment, StripeEvent


def ops_dashboard(request: HttpRequest) -> HttpResponse:
    if not is_ops(request.user):
        raise PermissionDenied
    buckets = open_balance_by_age(now=timezone.now())
    biggest = max((b.cents for b in buckets), default=0) or 1
    bars = [
        {"label": b.label, "count": b.count, "amount": format_cents(b.cents), "width": round(300 * b.cents / biggest)}
        for b in buckets
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Ops dashboard",
        # The enums the changelist links filter by (?outcome__exact=…), so a link names the value the rows store.
        "session_outcome": TherapySession.Outcome,
        "stripe_outcome": StripeEvent.Outcome,
        "claim_status": Claim.Status,
        "invoice_kind": Invoice.Kind,
        "invoice_status": Invoice.Status,
        "bars": bars,
        "total": format_cents(sum(b.cents for b in buckets)),
        "runs": ReminderRun.objects.all()[:10],
        "autopay_failures": Payment.objects.filter(
            source=Payment.Source.AUTOPAY, status=Payment.Status.FAILED
        ).select_related("patient")[:10],
        "needs_attention": TherapySession.objects.filter(
            billing_outcome=TherapySession.Outcome.NEEDS_ATTENTION
        ).count(),
        "discrepancies": Invoice.objects.filter(
            outside_payment_reported_at__isnull=False, status=Invoice.Status.OPEN
        ).count(),
        "disputes": Invoice.objects.filter(disputed_at__isnull=False).count(),
        "claims_attention": Claim.objects.exclude(attention="").count(),  # P13: denials and what imports left
        "claims_waiting": claims_waiting(now=timezone.now()),
        "no_email": Invoice.objects.exclude(email_problem="").filter(status=Invoice.Status.OPEN).count(),
        # Issue 15: addresses the email service reported bouncing or complained of (ids, never addresses).
        "bouncing_count": Patient.objects.exclude(email_undeliverable_reason="").count(),
        "bouncing": Patient.objects.exclude(email_undeliverable_reason="").order_by("-email_undeliverable_at")[:50],
        "payments_attention": Payment.objects.filter(
            Q(attention_at__gte=timezone.now() - timedelta(days=30))
            | Q(attention_at__isnull=False, status__in=Payment.OPEN_STATUSES)  # still held: shown however old
        )
        .order_by("-attention_at")
        .select_related("patient")[:20],
        "stripe_not_ours": StripeEvent.objects.filter(
            outcome=StripeEvent.Outcome.NOT_OURS, received_at__gte=timezone.now() - timedelta(days=30)
        ).count(),
        "stripe_failed": StripeEvent.objects.filter(outcome=StripeEvent.Outcome.FAILED).count(),
        "reminders_in_doubt": ReminderLog.objects.filter(status=ReminderLog.Status.IN_DOUBT).order_by("sent_on", "id")[
            :50
        ],
    }
    return TemplateResponse(request, "admin/ops_dashboard.html", context)
