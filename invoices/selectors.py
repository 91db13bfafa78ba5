"""Reads for billing: which plan, which eligibility check, which EAP authorization, what is left undone."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, IntegerField, Q, QuerySet, Subquery, Sum, Value
from django.utils import timezone

from claims.models import Claim
from invoices.models import Coverage, EapAuthorization, EligibilitySnapshot, Invoice, TherapySession


def active_coverage_for(*, patient_id: int) -> Coverage | None:
    return Coverage.objects.filter(patient_id=patient_id, is_active=True).order_by("-id").first()


def eligibility_check_for(*, coverage: Coverage, day: date) -> EligibilitySnapshot | None:
    """The most recent completed eligibility check made on or before the day of service (P2)."""
    return (
        EligibilitySnapshot.objects.filter(
            coverage=coverage, status=EligibilitySnapshot.Status.COMPLETED, checked_at__date__lte=day
        )
        .order_by("-checked_at", "-id")
        .first()
    )


def eligibility_check_locking_plan(*, patient_id: int, day: date) -> EligibilitySnapshot | None:
    """The most recent completed eligibility check on or before the day of service of the patient's active plan
    (P2), with the plan (`coverage`) locked for the rest of the transaction, so two sessions billed at once do not
    both spend the same remaining deductible. One query; None when the plan or such a check is missing (with
    nothing locked: nothing will be spent)."""
    if connection.vendor == "postgresql":  # the same query written out: the ORM took ~1.5 ms to build it, per invoice
        params = [patient_id, EligibilitySnapshot.Status.COMPLETED.value, timezone.get_current_timezone_name(), day]
        return next(iter(EligibilitySnapshot.objects.raw(_CHECK_LOCKING_PLAN_SQL, params)), None)
    plan = Coverage.objects.filter(patient_id=patient_id, is_active=True).order_by("-id").values("id")[:1]
    return (
        EligibilitySnapshot.objects.select_related("coverage")
        .select_for_update(of=("coverage",))
        .filter(coverage_id=Subquery(plan), status=EligibilitySnapshot.Status.COMPLETED, checked_at__date__lte=day)
        .order_by("-checked_at", "-id")
        .first()
    )


# The day of a check is its date in the current time zone, as the ORM's __date lookup computes it.
_CHECK_LOCKING_PLAN_SQL = """
SELECT s.* FROM invoices_eligibilitysnapshot s JOIN invoices_coverage c ON c.id = s.coverage_id
WHERE c.id = (
    SELECT id FROM invoices_coverage WHERE patient_id = %s AND is_active ORDER BY id DESC LIMIT 1
) AND s.status = %s AND (s.checked_at AT TIME ZONE %s)::date <= %s
ORDER BY s.checked_at DESC, s.id DESC
LIMIT 1
FOR UPDATE OF c
"""


# Decided claims count with the plan's figures, the other invoices on the check with the estimate's; voided invoices
# count for nothing. NOT IN over a set without NULLs (the WHERE says so), like the exclusion it replaces. The table
# names come from the models (no input is formatted in).
_USED_ON_SQL = f"""
WITH decided AS (
    SELECT session_id, plan_deductible_cents, plan_responsibility_cents FROM {Claim._meta.db_table}
    WHERE eligibility_snapshot_id = %s AND plan_responsibility_cents IS NOT NULL AND session_id IS NOT NULL
)
SELECT
    (SELECT COALESCE(SUM(plan_deductible_cents), 0) FROM decided),
    (SELECT COALESCE(SUM(plan_responsibility_cents), 0) FROM decided),
    COALESCE(SUM(i.deductible_applied_cents), 0),
    COALESCE(SUM(i.amount_cents - i.credited_cents), 0)
FROM {Invoice._meta.db_table} i
WHERE i.eligibility_snapshot_id = %s AND i.status <> %s AND i.session_id NOT IN (SELECT session_id FROM decided)
"""  # noqa: S608


def eligibility_used_on(*, snapshot: EligibilitySnapshot) -> tuple[int, int]:
    """What earlier sessions on this eligibility check already used of the deductible and of the out-of-pocket
    maximum, as (deductible_cents, out_of_pocket_cents): the plan's figures for the claims it decided (the
    accumulators a remittance recorded: CAS PR 1, and CLP05), the estimate's for the others. One query."""
    with connection.cursor() as cursor:
        cursor.execute(_USED_ON_SQL, [snapshot.pk, snapshot.pk, Invoice.Status.VOID.value])
        plan_deductible, plan_owed, deductible, owed = cursor.fetchone()
    return int(plan_deductible) + int(deductible), int(plan_owed) + int(owed)


def eap_authorization_for(*, patient_id: int, day: date) -> EapAuthorization | None:
    """The patient's authorization valid on that day, preferring one with sessions left."""
    candidates = EapAuthorization.objects.filter(patient_id=patient_id, valid_from__lte=day, valid_until__gte=day)
    return next((a for a in candidates.order_by("valid_until", "id") if a.covers(day)), None) or candidates.first()


def sessions_awaiting_billing(*, completed_before: datetime) -> QuerySet[TherapySession]:
    """Completed sessions that no task billed yet: the sweep's work list."""
    return TherapySession.objects.filter(
        status=TherapySession.Status.COMPLETED,
        billing_outcome=TherapySession.Outcome.PENDING,
        completed_at__lt=completed_before,
    ).order_by("id")


def invoices_awaiting_email(*, issued_before: datetime) -> QuerySet[Invoice]:
    return Invoice.objects.filter(
        status=Invoice.Status.OPEN, emailed_at__isnull=True, email_problem="", issued_at__lt=issued_before
    ).order_by("id")


def invoices_for_patient(*, patient_id: int) -> QuerySet[Invoice]:
    """A verified patient's invoices with what their page shows, in one query (oldest session first)."""
    return (
        Invoice.objects.filter(patient_id=patient_id)
        .select_related("session__claim", "provider")
        .order_by("session__date_of_service", "id")
    )


def invoice_for_patient(*, patient_id: int, number: str) -> Invoice | None:
    """One invoice, only if it belongs to this patient: another patient's number is simply not found."""
    return invoices_for_patient(patient_id=patient_id).filter(number=number).first()


# Open balance age buckets (days since issue), shared by the dashboard and the admin's age filter.
AGING_BUCKETS: list[tuple[str, int, int | None]] = [
    ("0–30 days", 0, 30),
    ("31–60 days", 31, 60),
    ("61–90 days", 61, 90),
    ("90+ days", 91, None),
]


@dataclass(frozen=True)
class AgingBucket:
    label: str
    cents: int
    count: int


def issued_within(*, low: int, high: int | None, now: datetime) -> Q:
    """Invoices issued between `low` and `high` whole days ago (`high` None: or earlier)."""
    window = Q(issued_at__lte=now - timedelta(days=low))
    if high is not None:
        window &= Q(issued_at__gt=now - timedelta(days=high + 1))
    return window


def open_balance_by_age(*, now: datetime) -> list[AgingBucket]:
    """Open invoices by days since issue, in one aggregate query."""
    aggregates: dict[str, Any] = {}
    for index, (_, low, high) in enumerate(AGING_BUCKETS):
        window = issued_within(low=low, high=high, now=now)
        owed = F("amount_cents") - F("credited_cents")  # less the plan's credits (P13)
        aggregates[f"cents_{index}"] = Sum(owed, filter=window, default=Value(0, IntegerField()))
        aggregates[f"count_{index}"] = Count("id", filter=window)
    totals = Invoice.objects.filter(status=Invoice.Status.OPEN).aggregate(**aggregates)
    return [
        AgingBucket(label=label, cents=int(totals[f"cents_{i}"]), count=int(totals[f"count_{i}"]))
        for i, (label, _, _) in enumerate(AGING_BUCKETS)
    ]
