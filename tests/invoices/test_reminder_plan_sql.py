"""P3: the reminder plan written as one SQL statement per chunk (PostgreSQL) decides exactly what the Python plan
(SQLite, and the schedule's own function `latest_reminder_day`) decides, whatever the schedule and the history."""

from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from invoices import reminders
from invoices.models import Invoice, Patient, ReminderLog, ReminderRun
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 11, 26)

invoice_st = st.fixed_dictionaries(
    {
        "age": st.integers(0, 80),
        # Around midnight in New York too: the plan counts days in TIME_ZONE, not in UTC.
        "minute_of_day": st.sampled_from([0, 30, 9 * 60, 23 * 60 + 59, 4 * 60 + 30, 19 * 60 + 30]),
        "amount": st.integers(1, 50_000),
        "credited": st.integers(0, 1),
        "status": st.sampled_from([Invoice.Status.OPEN, Invoice.Status.OPEN, Invoice.Status.PAID, Invoice.Status.VOID]),
    }
)
patient_st = st.fixed_dictionaries(
    {
        "email": st.sampled_from(["ok", "ok", "none", "bouncing"]),
        "invoices": st.lists(invoice_st, min_size=1, max_size=4),
        # Earlier reminders: how many days ago, and whether that send failed (a failed one does not count).
        "reminded": st.lists(
            st.tuples(st.integers(0, 60), st.sampled_from([str(status) for status in ReminderLog.Status])),
            max_size=3,
            unique_by=lambda reminder: tuple(reminder)[0],  # one reminder a day
        ),
        # Also reminded on the latest schedule point of one of the invoices (the edge between due and not due).
        "at_point": st.one_of(st.none(), st.integers(0, 3)),
    }
)


def _build(patients: list[dict[str, Any]]) -> list[int]:
    tz = timezone.get_current_timezone()
    ids: list[int] = []
    for spec in patients:
        patient = PatientFactory(
            email="" if spec["email"] == "none" else f"p{len(ids)}@example.com",
            email_undeliverable_reason="bounced" if spec["email"] == "bouncing" else "",
        )
        for number, inv in enumerate(spec["invoices"]):
            invoice = InvoiceFactory(session__patient=patient, amount_cents=inv["amount"])
            day = AS_OF - timedelta(days=inv["age"])
            at = datetime.combine(day, time()).replace(tzinfo=tz) + timedelta(minutes=inv["minute_of_day"] + number)
            Invoice.objects.filter(pk=invoice.pk).update(
                issued_at=at, status=inv["status"], credited_cents=inv["credited"] * (inv["amount"] // 2)
            )
        reminded = {AS_OF - timedelta(days=days_ago): status for days_ago, status in spec["reminded"]}
        if spec.get("at_point") is not None:
            inv = spec["invoices"][spec["at_point"] % len(spec["invoices"])]
            point = reminders.latest_reminder_day(issued_on=AS_OF - timedelta(days=inv["age"]), as_of=AS_OF)
            if point is not None:
                reminded[point] = ReminderLog.Status.SENT
        for sent_on, status in reminded.items():
            ReminderLog.objects.create(patient=patient, sent_on=sent_on, status=status)
        ids.append(patient.pk)
    return ids


def _plan_with(chunk: Any, patient_ids: list[int], *, dry_run: bool) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """One plan of the chunk, rolled back afterwards: what it counted and the rows it wrote."""
    with transaction.atomic():
        run = ReminderRun.objects.create(as_of=AS_OF, dry_run=dry_run)
        result = reminders.PlanResult()
        chunk(patient_ids, run=run, schedule=reminders._schedule(), result=result)
        rows = list(
            ReminderLog.objects.filter(run=run)
            .order_by("patient_id")
            .values_list("patient_id", "sent_on", "status", "reason", "invoice_ids", "total_cents")
        )
        transaction.set_rollback(True)
    counted = asdict(result)
    for key in ("no_email", "undeliverable", "planned_ids"):
        counted[key] = sorted(counted[key])
    return counted, rows


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patients=st.lists(patient_st, min_size=1, max_size=5),
    schedule=st.lists(st.integers(0, 40), min_size=1, max_size=5, unique=True),
    repeat=st.integers(0, 20),
    dry_run=st.booleans(),
)
def test_p3_the_sql_plan_and_the_python_plan_agree(
    postgres: None, settings: Any, patients: list[dict[str, Any]], schedule: list[int], repeat: int, dry_run: bool
) -> None:
    settings.REMINDER_SCHEDULE_DAYS = schedule
    settings.REMINDER_REPEAT_DAYS = repeat
    with transaction.atomic():
        patient_ids = _build(patients)
        in_sql = _plan_with(reminders._plan_chunk_sql, patient_ids, dry_run=dry_run)
        in_python = _plan_with(reminders._plan_chunk_python, patient_ids, dry_run=dry_run)
        transaction.set_rollback(True)
    assert in_sql == in_python
    assert Patient.objects.filter(pk__in=patient_ids).count() == 0  # each example leaves nothing behind


def test_p3_the_plans_agree_on_a_patient_due_today_and_one_reminded_today(postgres: None, settings: Any) -> None:
    """A fixed example, so a failure of the property above has a readable twin."""
    settings.REMINDER_SCHEDULE_DAYS, settings.REMINDER_REPEAT_DAYS = [3, 7, 14, 21, 30], 14
    base = {"minute_of_day": 9 * 60, "amount": 7_000, "credited": 0, "status": Invoice.Status.OPEN}
    patient_ids = _build(
        [
            {"email": "ok", "invoices": [{**base, "age": 7}, {**base, "age": 44}], "reminded": [(3, "sent")]},
            {"email": "ok", "invoices": [{**base, "age": 14}], "reminded": [(0, "sent")]},
        ]
    )
    in_sql = _plan_with(reminders._plan_chunk_sql, patient_ids, dry_run=False)
    assert in_sql == _plan_with(reminders._plan_chunk_python, patient_ids, dry_run=False)
    counted, rows = in_sql
    assert (counted["due"], counted["planned"], counted["invoices"], counted["already_today"]) == (1, 1, 2, 1)
    assert [(pid, status, total) for pid, _, status, _, _, total in rows] == [(patient_ids[0], "pending", 14_000)]
