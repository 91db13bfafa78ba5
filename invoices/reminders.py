"""P3: reminders until paid. Patients cannot turn them off; a payment made outside the platform does not stop them.

Two phases. *Plan* selects the patients due, chunk by chunk with four queries per chunk, and inserts
one `ReminderLog` per patient per day (a database rule, so re-runs, concurrent runs and restarts never plan a
second reminder). *Deliver* sends each planned reminder with a fresh link, one row lock and one commit per email,
skipping rows another worker holds; a restarted run delivers what a killed run planned but did not send.
"""

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from alma_billing.core.audit import SYSTEM, audit_record
from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from invoices.models import Invoice, ReminderLog, ReminderRun

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def latest_reminder_day(*, issued_on: date, as_of: date, schedule: tuple[int, ...] | None = None) -> date | None:
    """The most recent scheduled reminder day on or before `as_of` for an invoice issued on `issued_on`."""
    days = schedule if schedule is not None else _schedule()
    age = (as_of - issued_on).days
    if not days or age < days[0]:
        return None
    last, repeat = days[-1], settings.REMINDER_REPEAT_DAYS
    if age > last and repeat > 0:
        offset = last + (age - last) // repeat * repeat
    else:
        offset = max(day for day in days if day <= age)
    return issued_on + timedelta(days=offset)


def _schedule() -> tuple[int, ...]:
    return tuple(sorted(settings.REMINDER_SCHEDULE_DAYS))


@dataclass
class PlanResult:
    due: int = 0
    planned: int = 0
    invoices: int = 0
    no_email: list[int] = field(default_factory=list)
    already_today: int = 0


def _patient_chunks(*, as_of: date, size: int) -> Iterator[list[int]]:
    """Patients with open invoices old enough for the first reminder, by id (keyset pagination)."""
    first_day = min(settings.REMINDER_SCHEDULE_DAYS, default=0)
    cutoff = timezone.make_aware(datetime.combine(as_of - timedelta(days=first_day - 1), time.min))
    last_id = 0
    while True:
        ids = list(
            Invoice.objects.filter(status=Invoice.Status.OPEN, issued_at__lt=cutoff, patient_id__gt=last_id)
            .order_by("patient_id")
            .values_list("patient_id", flat=True)
            .distinct()[:size]
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def reminders_plan(*, run: ReminderRun, progress: Progress | None = None) -> PlanResult:
    """Insert today's reminders for every patient who is due. Four queries per chunk of patients."""
    result = PlanResult()
    as_of = run.as_of
    tz = timezone.get_current_timezone()
    schedule = _schedule()
    total = Invoice.objects.filter(status=Invoice.Status.OPEN).values("patient_id").distinct().count()
    seen = 0
    for patient_ids in _patient_chunks(as_of=as_of, size=settings.REMINDER_CHUNK_SIZE):
        seen += len(patient_ids)
        open_rows = (
            Invoice.objects.filter(patient_id__in=patient_ids, status=Invoice.Status.OPEN)
            .order_by()  # the model's default ordering would join sessions for nothing
            .values_list("patient_id", "id", "issued_at", "amount_cents", "patient__email")
        )
        invoices: dict[int, list[tuple[int, int]]] = defaultdict(list)
        latest_point: dict[int, date] = {}
        emails: dict[int, str] = {}
        for patient_id, invoice_id, issued_at, amount, email in open_rows:
            invoices[patient_id].append((invoice_id, amount))
            emails[patient_id] = email
            point = latest_reminder_day(issued_on=issued_at.astimezone(tz).date(), as_of=as_of, schedule=schedule)
            if point and (patient_id not in latest_point or point > latest_point[patient_id]):
                latest_point[patient_id] = point
        last_reminded = dict(
            ReminderLog.objects.filter(patient_id__in=patient_ids)
            .exclude(status=ReminderLog.Status.FAILED)
            .order_by()
            .values("patient_id")
            .annotate(last=Max("sent_on"))
            .values_list("patient_id", "last")
        )
        due = []
        for pid, point in latest_point.items():
            last = last_reminded.get(pid)
            if last is None or point > last:
                due.append(pid)
            elif last == as_of:
                result.already_today += 1
        result.due += len(due)
        rows = []
        for pid in due:
            status, reason = ReminderLog.Status.PENDING, ""
            if not emails.get(pid):
                status, reason = ReminderLog.Status.SKIPPED, "No email address on file."
                result.no_email.append(pid)
            else:
                result.planned += 1
                result.invoices += len(invoices[pid])
            rows.append(
                ReminderLog(
                    patient_id=pid,
                    sent_on=as_of,
                    run=run,
                    status=status,
                    reason=reason,
                    invoice_ids=sorted(i for i, _ in invoices[pid]),
                    total_cents=sum(a for _, a in invoices[pid]),
                )
            )
        if rows and not run.dry_run:
            # A concurrent run may have planned some of these a moment ago: the unique constraint keeps theirs.
            _insert_logs(rows, as_of=as_of, run_id=run.pk)
        if progress:
            progress("plan", seen, total)
    return result


def _insert_logs(rows: list[ReminderLog], *, as_of: date, run_id: int) -> None:
    """One statement per chunk. On PostgreSQL the rows travel as arrays (no per-row SQL building in Python)."""
    if connection.vendor != "postgresql":
        ReminderLog.objects.bulk_create(rows, ignore_conflicts=True)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO invoices_reminderlog"
            " (patient_id, sent_on, run_id, status, reason, invoice_ids, total_cents, created_at)"
            " SELECT d.patient_id, %s, %s, d.status, d.reason, d.invoice_ids::jsonb, d.total_cents, now()"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::integer[])"
            " AS d(patient_id, status, reason, invoice_ids, total_cents)"
            " ON CONFLICT (patient_id, sent_on) DO NOTHING",
            [
                as_of,
                run_id,
                [row.patient_id for row in rows],
                [row.status for row in rows],
                [row.reason for row in rows],
                [json.dumps(row.invoice_ids) for row in rows],
                [row.total_cents for row in rows],
            ],
        )


def reminder_deliver(*, log_id: int) -> bool:
    """Send one planned reminder with a fresh link. Returns whether an email went out. Never sends a row twice."""
    from verification.services import pay_link_email_context

    with transaction.atomic():
        log = (
            ReminderLog.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("patient")
            .filter(pk=log_id, status=ReminderLog.Status.PENDING)
            .first()
        )
        if log is None:
            return False  # sent already, or another worker is sending it right now
        invoices = list(
            Invoice.objects.filter(pk__in=log.invoice_ids, status=Invoice.Status.OPEN).order_by("issued_at", "id")
        )
        if not invoices:
            if Invoice.objects.filter(pk__in=log.invoice_ids, status=Invoice.Status.PROCESSING).exists():
                # Being paid right now: no reminder, and no record of one, so that if the payment fails the
                # patient is reminded on the next run rather than at the next schedule point.
                log.delete()
                return False
            log.status, log.reason = ReminderLog.Status.SKIPPED, "Paid before the reminder went out."
            log.save(update_fields=["status", "reason"])
            return False
        patient = log.patient
        _, context = pay_link_email_context(patient=patient, invoice=invoices[-1])
        context["invoices"] = [
            {"number": i.number, "issued_on": timezone.localdate(i.issued_at), "amount": format_cents(i.amount_cents)}
            for i in invoices
        ]
        context["total"] = format_cents(sum(i.amount_cents for i in invoices))
        count = len(invoices)
        subject = (
            "Reminder: you have an open invoice from Alma"
            if count == 1
            else f"Reminder: you have {count} open invoices from Alma"
        )
        send_patient_email(to=patient.email, subject=subject, template="emails/reminder", context=context)
        log.status, log.sent_at = ReminderLog.Status.SENT, timezone.now()
        log.invoice_ids = [i.pk for i in invoices]
        log.save(update_fields=["status", "sent_at", "invoice_ids"])
    return True


@dataclass
class RunSummary:
    run_id: int
    as_of: date
    dry_run: bool
    due: int
    reminded: int
    invoices: int
    no_email: list[int]
    already_today: int
    failures: int


def reminders_run(
    *, as_of: date | None = None, dry_run: bool = False, triggered_by: str = "beat", progress: Progress | None = None
) -> RunSummary:
    """Plan today's reminders, then deliver every pending one for the day (including a killed run's)."""
    as_of = as_of or timezone.localdate()
    run = ReminderRun.objects.create(as_of=as_of, dry_run=dry_run, triggered_by=triggered_by)
    failures = reminded = 0
    try:
        plan = reminders_plan(run=run, progress=progress)
        if not dry_run:
            pending = list(
                ReminderLog.objects.filter(sent_on=as_of, status=ReminderLog.Status.PENDING).values_list(
                    "id", flat=True
                )
            )
            for done, log_id in enumerate(pending, start=1):
                try:
                    reminded += reminder_deliver(log_id=log_id)
                except Exception:  # one bad address must not stop everyone else's reminder
                    failures += 1
                    logger.exception("reminder %s could not be sent", log_id)
                    ReminderLog.objects.filter(pk=log_id, status=ReminderLog.Status.PENDING).update(
                        status=ReminderLog.Status.FAILED, reason="Sending failed; retried on the next run."
                    )
                if progress:
                    progress("send", done, len(pending))
    except Exception as error:
        ReminderRun.objects.filter(pk=run.pk).update(
            status=ReminderRun.Status.FAILED, finished_at=timezone.now(), error=str(error)[:2000]
        )
        raise
    ReminderRun.objects.filter(pk=run.pk).update(
        status=ReminderRun.Status.FINISHED,
        finished_at=timezone.now(),
        patients_reminded=plan.planned if dry_run else reminded,
        invoices_covered=plan.invoices,
        skipped_no_email=len(plan.no_email),
        skipped_already_today=plan.already_today,
        failures=failures,
    )
    if plan.no_email and not dry_run:
        audit_record(actor=SYSTEM, action="reminders.no_email", obj=run, patient_ids=plan.no_email[:500])
    return RunSummary(
        run_id=run.pk,
        as_of=as_of,
        dry_run=dry_run,
        due=plan.due,
        reminded=plan.planned if dry_run else reminded,
        invoices=plan.invoices,
        no_email=plan.no_email,
        already_today=plan.already_today,
        failures=failures,
    )
