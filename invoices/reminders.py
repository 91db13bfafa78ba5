"""P3: reminders until paid. Patients cannot turn them off; a payment made outside the platform does not stop them.

Two phases. *Plan* selects the patients due, chunk by chunk with two statements per chunk, and inserts
one `ReminderLog` per patient per day (a database rule, so re-runs, concurrent runs and restarts never plan a
second reminder). *Deliver* sends each planned reminder with a fresh link, one row lock and one commit per email,
skipping rows another worker holds; a restarted run delivers what a killed run planned but did not send.
"""

import logging
import smtplib
import socket
import time as time_module
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TypeVar

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import ngettext_lazy

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_record
from alma_billing.core.errors import ServiceError
from alma_billing.core.mail import build_patient_email
from alma_billing.core.money import format_cents
from invoices import hooks
from invoices.models import Invoice, ReminderLog, ReminderRun

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
T = TypeVar("T")


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
    undeliverable: list[int] = field(default_factory=list)  # the email service reported the address bouncing
    already_today: int = 0
    planned_ids: list[int] = field(default_factory=list)  # kept for a dry run's listing (ids, never names)


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
    """Insert today's reminders for every patient who is due, chunk by chunk of patients. On PostgreSQL each chunk
    is two statements: its patient ids, then one that works out who is due (the schedule in SQL), inserts their
    rows and returns only what the summary counts; no Python object per invoice."""
    result = PlanResult()
    schedule = _schedule()
    if not schedule:
        return result  # no schedule point: nobody is ever due
    # Only the progress display needs the total (a full pass over the open invoices).
    total = 0
    if progress:
        total = Invoice.objects.filter(status=Invoice.Status.OPEN).values("patient_id").distinct().count()
    plan_chunk = _plan_chunk_sql if connection.vendor == "postgresql" else _plan_chunk_python
    seen = 0
    for patient_ids in _patient_chunks(as_of=run.as_of, size=settings.REMINDER_CHUNK_SIZE):
        seen += len(patient_ids)
        plan_chunk(patient_ids, run=run, schedule=schedule, result=result)
        if progress:
            progress("plan", seen, total)
    return result


DRY_RUN_LISTED = 1000
_NO_EMAIL = "No email address on file."
_UNDELIVERABLE = "Email address undeliverable (reported bouncing)."

# One chunk of patients, set-based. `point` is each patient's latest schedule point (latest_reminder_day in SQL:
# the day in TIME_ZONE, the schedule's days, then every `repeat` days after the last); a patient is due when
# that point is after their last reminder that did not fail, and "already today" when that last one is today.
# A concurrent run may have planned some rows a moment ago: ON CONFLICT keeps theirs. The counts come from who
# is due, whatever the insert kept, as they always did.
_PLAN_CHUNK_SQL = """
WITH issued AS MATERIALIZED (  -- the time zone conversion once per invoice, not once per use
    SELECT i.patient_id, i.id, i.amount_cents - i.credited_cents AS owed,
           (i.issued_at AT TIME ZONE %(tz)s)::date AS issued_on
    FROM invoices_invoice i
    WHERE i.patient_id = ANY(%(ids)s) AND i.status = %(open)s
), open_invoices AS (
    SELECT patient_id, id, owed, issued_on, %(as_of)s::date - issued_on AS age FROM issued
), per_patient AS (
    SELECT patient_id,
           max(CASE WHEN age >= %(first)s THEN issued_on + CASE
               WHEN age > %(last)s AND %(repeat)s > 0 THEN %(last)s + (age - %(last)s) / %(repeat)s * %(repeat)s
               ELSE (SELECT max(d) FROM unnest(%(schedule)s::int[]) d WHERE d <= age)
           END END) AS point,
           jsonb_agg(id ORDER BY id) AS invoice_ids, sum(owed) AS total_cents, count(*) AS invoices
    FROM open_invoices
    GROUP BY patient_id
), last_reminded AS (
    SELECT r.patient_id, max(r.sent_on) AS last
    FROM invoices_reminderlog r
    WHERE r.patient_id = ANY(%(ids)s) AND r.status <> %(failed)s
    GROUP BY r.patient_id
), judged AS (
    SELECT pp.patient_id, pp.invoice_ids, pp.total_cents, pp.invoices,
           (l.last IS NULL OR pp.point > l.last) AS due,
           l.last = %(as_of)s::date AS already_today,
           CASE WHEN COALESCE(p.email, '') = '' THEN %(skipped)s
                WHEN COALESCE(p.email_undeliverable_reason, '') <> '' THEN %(skipped)s
                ELSE %(pending)s END AS status,
           CASE WHEN COALESCE(p.email, '') = '' THEN %(no_email)s
                WHEN COALESCE(p.email_undeliverable_reason, '') <> '' THEN %(undeliverable)s
                ELSE '' END AS reason
    FROM per_patient pp
    JOIN invoices_patient p ON p.id = pp.patient_id AND p.id = ANY(%(ids)s)  -- the chunk's rows by key, not a scan
    LEFT JOIN last_reminded l ON l.patient_id = pp.patient_id
    WHERE pp.point IS NOT NULL
), inserted AS (
    INSERT INTO invoices_reminderlog
        (patient_id, sent_on, run_id, status, reason, invoice_ids, total_cents, created_at, attempts)
    SELECT patient_id, %(as_of)s, %(run)s, status, reason, invoice_ids, total_cents, now(), 0
    FROM judged
    WHERE due AND NOT %(dry_run)s
    ON CONFLICT (patient_id, sent_on) DO NOTHING
)
SELECT patient_id, due, reason, invoices FROM judged WHERE due OR already_today ORDER BY patient_id
"""


def _plan_chunk_sql(patient_ids: list[int], *, run: ReminderRun, schedule: tuple[int, ...], result: PlanResult) -> None:
    params = {
        "ids": patient_ids,
        "tz": timezone.get_current_timezone_name(),
        "as_of": run.as_of,
        "run": run.pk,
        "dry_run": run.dry_run,
        "schedule": list(schedule),
        "first": schedule[0],
        "last": schedule[-1],
        "repeat": settings.REMINDER_REPEAT_DAYS,
        "open": Invoice.Status.OPEN.value,
        "failed": ReminderLog.Status.FAILED.value,
        "pending": ReminderLog.Status.PENDING.value,
        "skipped": ReminderLog.Status.SKIPPED.value,
        "no_email": _NO_EMAIL,
        "undeliverable": _UNDELIVERABLE,
    }
    with connection.cursor() as cursor:
        cursor.execute(_PLAN_CHUNK_SQL, params)
        rows = cursor.fetchall()
    for patient_id, due, reason, invoices in rows:
        if not due:
            result.already_today += 1
            continue
        result.due += 1
        if reason == _NO_EMAIL:
            result.no_email.append(patient_id)
        elif reason == _UNDELIVERABLE:
            result.undeliverable.append(patient_id)
        else:
            result.planned += 1
            result.invoices += invoices
            if run.dry_run and len(result.planned_ids) < DRY_RUN_LISTED:
                result.planned_ids.append(patient_id)


def _plan_chunk_python(
    patient_ids: list[int], *, run: ReminderRun, schedule: tuple[int, ...], result: PlanResult
) -> None:
    """The same plan for SQLite (development): the chunk's open invoices and last reminders in Python."""
    as_of = run.as_of
    tz = timezone.get_current_timezone()
    open_rows = (
        Invoice.objects.filter(patient_id__in=patient_ids, status=Invoice.Status.OPEN)
        .order_by()  # the model's default ordering would join sessions for nothing
        .annotate(owed=F("amount_cents") - F("credited_cents"))  # what the plan's credits left (P13)
        .values_list("patient_id", "id", "issued_at", "owed", "patient__email", "patient__email_undeliverable_reason")
    )
    invoices: dict[int, list[tuple[int, int]]] = defaultdict(list)
    latest_point: dict[int, date] = {}
    emails: dict[int, str] = {}
    bouncing: set[int] = set()
    for patient_id, invoice_id, issued_at, amount, email, undeliverable in open_rows:
        invoices[patient_id].append((invoice_id, amount))
        emails[patient_id] = email
        if undeliverable:
            bouncing.add(patient_id)
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
    rows = []
    for pid, point in sorted(latest_point.items()):
        last = last_reminded.get(pid)
        if last is not None and point <= last:
            result.already_today += last == as_of
            continue
        result.due += 1
        status, reason = ReminderLog.Status.PENDING, ""
        if not emails.get(pid):
            status, reason = ReminderLog.Status.SKIPPED, _NO_EMAIL
            result.no_email.append(pid)
        elif pid in bouncing:
            status, reason = ReminderLog.Status.SKIPPED, _UNDELIVERABLE
            result.undeliverable.append(pid)
        else:
            result.planned += 1
            result.invoices += len(invoices[pid])
            if run.dry_run and len(result.planned_ids) < DRY_RUN_LISTED:
                result.planned_ids.append(pid)
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
        ReminderLog.objects.bulk_create(rows, ignore_conflicts=True)


class ReminderNotSent(Exception):
    """The mail server refused or could not be reached: nothing went out, and the row waits for the next run."""


class DatabaseUnavailable(Exception):
    """The database stayed unreachable past REMINDER_DB_RETRY: the run stops and says so."""

    # True when raised after the mail server was called: the row stays "sending", so its outcome is in doubt.
    in_flight = False


# Errors that mean the mail server did not take the message (it refused, or was never reached). Anything else
# while sending (a timeout or a dropped connection after DATA) may have delivered it: that is "in doubt".
_NOT_SENT = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
    ConnectionRefusedError,
    socket.gaierror,
)
MAX_ATTEMPTS = 5
# A row claimed for sending this long ago, and still not recorded as sent, was interrupted mid-send.
SENDING_STALE_AFTER = timedelta(minutes=5)
RUN_HEARTBEAT_STALE_AFTER = timedelta(minutes=15)


def _with_database(action: Callable[[], T]) -> T:
    """Run `action`, reconnecting and retrying while the database comes back (a restart, a dropped connection),
    for up to REMINDER_DB_RETRY. A write retried here is a guarded UPDATE, so repeating it is harmless."""
    deadline = time_module.monotonic() + settings.REMINDER_DB_RETRY.total_seconds()
    delay = 0.2
    while True:
        try:
            return action()
        except (OperationalError, InterfaceError) as error:
            if connection.in_atomic_block:
                raise  # reconnecting would throw away the caller's transaction: it is the caller's to handle
            connection.close()  # a broken connection is not reused; the next query opens a new one
            if time_module.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"the database did not answer ({type(error).__name__})") from error
            logger.warning("reminders: database unavailable (%s); retrying", type(error).__name__)
            time_module.sleep(delay)
            delay = min(delay * 2, 2.0)


def reminder_message_id(log_id: int) -> str:
    """Our own Message-ID, so ops can look a reminder up in the mail provider's log."""
    return f"<reminder-{log_id}@{settings.REMINDER_MESSAGE_ID_DOMAIN}>"


class Delivery(StrEnum):
    """What became of one pending reminder."""

    SENT = "sent"
    PAID = "paid"  # nothing open any more: skipped
    BEING_PAID = "being_paid"  # a payment holds its invoices: no reminder, and none recorded
    ELSEWHERE = "elsewhere"  # another run or the sweep took it (or already sent it)
    ALREADY_TODAY = "already_today"  # another reminder (e.g. a late one from an earlier day) went out today
    UNDELIVERABLE = "undeliverable"  # the address was reported bouncing after the reminder was planned


def _claim(log_id: int) -> tuple[ReminderLog, EmailMultiAlternatives] | Delivery:
    """Lock a pending reminder, write the email (templates rendered here, so a template error changes nothing),
    and mark the row "sending" in one commit. A Delivery when there is nothing to send."""
    with transaction.atomic():
        log = (
            ReminderLog.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("patient")
            .filter(pk=log_id, status=ReminderLog.Status.PENDING)
            .first()
        )
        if log is None:
            return Delivery.ELSEWHERE  # sent already, or another worker is sending it right now
        # At most one reminder email a day: a row planned for an earlier day that is still pending (refused, then
        # picked up by the sweep) gives way to a newer one, and today's gives way to one that already went out today.
        others = ReminderLog.objects.filter(patient_id=log.patient_id).exclude(pk=log.pk)
        day_start = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
        newer = others.filter(sent_on__gt=log.sent_on).exclude(status=ReminderLog.Status.FAILED)
        sent_today = others.filter(
            Q(status=ReminderLog.Status.SENT, sent_at__gte=day_start)
            | Q(status__in=[ReminderLog.Status.SENDING, ReminderLog.Status.IN_DOUBT], claimed_at__gte=day_start)
        )
        earlier = newer.values_list("pk", flat=True).first()
        if earlier is None and log.sent_on == timezone.localdate():
            earlier = sent_today.values_list("pk", flat=True).first()
        if earlier is not None:
            log.status, log.reason = ReminderLog.Status.SKIPPED, f"Superseded by reminder #{earlier}."
            log.save(update_fields=["status", "reason"])
            return Delivery.ALREADY_TODAY
        invoices = list(
            Invoice.objects.filter(pk__in=log.invoice_ids, status=Invoice.Status.OPEN).order_by("issued_at", "id")
        )
        if not invoices:
            if Invoice.objects.filter(pk__in=log.invoice_ids, status=Invoice.Status.PROCESSING).exists():
                # Being paid right now: no reminder, and no record of one, so that if the payment fails the
                # patient is reminded on the next run rather than at the next schedule point.
                log.delete()
                return Delivery.BEING_PAID
            log.status, log.reason = ReminderLog.Status.SKIPPED, "Paid before the reminder went out."
            log.save(update_fields=["status", "reason"])
            return Delivery.PAID
        patient = log.patient
        if patient.email_undeliverable_reason:
            log.status, log.reason = ReminderLog.Status.SKIPPED, "Email address undeliverable (reported bouncing)."
            log.save(update_fields=["status", "reason"])
            return Delivery.UNDELIVERABLE
        _, context = hooks.pay_link_email_context.call(patient=patient, invoice=invoices[-1])
        context["invoices"] = [
            {"number": i.number, "issued_on": timezone.localdate(i.issued_at), "amount": format_cents(i.owed_cents)}
            for i in invoices
        ]
        context["total"] = format_cents(sum(i.owed_cents for i in invoices))
        count = len(invoices)
        subject = format_lazy(
            ngettext_lazy(
                "Reminder: you have an open invoice from Alma",
                "Reminder: you have {count} open invoices from Alma",
                count,
            ),
            count=count,
        )
        message = build_patient_email(
            to=patient.email,
            subject=subject,
            template="emails/reminder",
            context=context,
            headers={"Message-ID": reminder_message_id(log.pk)},
            language=log.patient.preferred_language,
        )
        log.status, log.claimed_at, log.attempts = ReminderLog.Status.SENDING, timezone.now(), log.attempts + 1
        log.invoice_ids = [i.pk for i in invoices]
        log.save(update_fields=["status", "claimed_at", "attempts", "invoice_ids"])
    return log, message


def reminder_deliver(*, log_id: int) -> Delivery:
    """Send one planned reminder with a fresh link. Never sends a row twice.

    The row is marked "sending" and committed before the mail server is called, and "sent" after it accepted the
    message. The connection to the mail server is opened first: failing to reach it, or a refusal, puts the row
    back to "pending" (the next run sends it). An interruption while the message is being handed over (a kill, a
    timeout after DATA, a database that stays down) leaves it "sending", which becomes "in doubt": shown to ops and
    never resent blindly. Raises ReminderNotSent or DatabaseUnavailable.
    """
    claimed = _with_database(lambda: _claim(log_id))
    if isinstance(claimed, Delivery):
        return claimed
    log, message = claimed
    mail_server = get_connection()
    try:
        try:
            mail_server.open()
        except Exception as error:  # not reached (refused, timed out, TLS, auth): nothing was handed over
            raise _NotReached(error) from error
        try:
            mail_server.send_messages([message])
        except Exception as error:
            if _provider_refused(error):  # an email service's API answered with an error: nothing was sent
                raise _NotReached(error) from error
            raise
    except (_NotReached, *_NOT_SENT) as error:
        cause = error.__cause__ if isinstance(error, _NotReached) else error
        gave_up = log.attempts >= MAX_ATTEMPTS
        status = ReminderLog.Status.FAILED if gave_up else ReminderLog.Status.PENDING
        reason = f"Mail server refused or unreachable ({type(cause).__name__}); " + (
            f"gave up after {log.attempts} tries." if gave_up else "it is sent again on the next run."
        )
        _record_outcome(
            lambda: ReminderLog.objects.filter(pk=log.pk, status=ReminderLog.Status.SENDING).update(
                status=status, reason=reason[:200]
            )
        )
        raise ReminderNotSent(reason) from error
    finally:
        try:
            mail_server.close()
        except Exception:  # the message's fate is decided; a failing QUIT changes nothing
            logger.warning("reminder %s: closing the mail connection failed", log.pk)
    _record_outcome(
        lambda: ReminderLog.objects.filter(pk=log.pk, status=ReminderLog.Status.SENDING).update(
            status=ReminderLog.Status.SENT, sent_at=timezone.now(), reason=""
        )
    )
    return Delivery.SENT


class _NotReached(Exception):
    """Opening the connection to the mail server failed: nothing was handed over."""


def _provider_refused(error: BaseException) -> bool:
    """An email service's API (django-anymail, EMAIL_PROVIDER) refused the message or was never reached: not sent.
    A timeout or a dropped connection while it was answering stays "in doubt", as with SMTP."""
    if isinstance(error, AnymailRecipientsRefused):
        return True
    if isinstance(error, AnymailAPIError):
        status = getattr(error, "status_code", None)
        if status is not None:
            return not 200 <= status < 300
        return isinstance(error.__cause__, requests.ConnectTimeout)
    return False


def _record_outcome(update: Callable[[], int]) -> None:
    """Record what the mail server said; if the database stays away, the row is left "sending" (in doubt)."""
    try:
        _with_database(update)
    except DatabaseUnavailable as error:
        error.in_flight = True
        raise


def reminders_mark_interrupted(*, now: datetime | None = None) -> tuple[int, int]:
    """What a killed run left behind: rows still "sending" become "in doubt", and runs still "running" whose
    heartbeat stopped become "interrupted". Returns (rows, runs)."""
    now = now or timezone.now()
    rows = ReminderLog.objects.filter(
        status=ReminderLog.Status.SENDING, claimed_at__lt=now - SENDING_STALE_AFTER
    ).update(
        status=ReminderLog.Status.IN_DOUBT,
        reason="Interrupted while sending: it may have been delivered. Not resent; check the mail log.",
    )
    runs = ReminderRun.objects.filter(
        status=ReminderRun.Status.RUNNING, heartbeat_at__lt=now - RUN_HEARTBEAT_STALE_AFTER
    ).update(status=ReminderRun.Status.INTERRUPTED, error="The run stopped without finishing (killed or lost).")
    if rows or runs:
        logger.warning("reminders: %s sends in doubt, %s runs interrupted", rows, runs)
    return rows, runs


UNSETTLED = (ReminderLog.Status.IN_DOUBT, ReminderLog.Status.SENDING)


def reminders_in_doubt() -> list[ReminderLog]:
    """Reminders in doubt, and those still marked "sending" (a run is sending them right now, or was killed
    less than SENDING_STALE_AFTER ago: they become "in doubt" then)."""
    reminders_mark_interrupted()
    return list(ReminderLog.objects.filter(status__in=UNSETTLED).order_by("sent_on", "id")[:200])


def reminder_resolve(*, log_id: int, delivered: bool, actor: Actor) -> ReminderLog:
    """Ops settle a reminder in doubt after checking the mail log: delivered, or send it (once) now.
    Every refusal is a ServiceError with a sentence for ops."""
    with transaction.atomic():
        log = ReminderLog.objects.select_for_update().filter(pk=log_id).first()
        if log is None:
            raise ServiceError(f"There is no reminder #{log_id}.")
        if log.status != ReminderLog.Status.IN_DOUBT:
            raise ServiceError(f"Reminder #{log.pk} is {log.get_status_display().lower()}, not in doubt.")
        if not delivered:
            today = ReminderLog.objects.filter(
                patient_id=log.patient_id, status=ReminderLog.Status.SENT, sent_at__date=timezone.localdate()
            ).exclude(pk=log.pk)
            if today.exists():
                raise ServiceError(
                    f"Patient #{log.patient_id} was already sent a reminder today; resend #{log.pk} tomorrow, or "
                    "mark it delivered."
                )
        if delivered:
            log.status, log.reason, log.sent_at = ReminderLog.Status.SENT, "Confirmed delivered by ops.", timezone.now()
        else:
            log.status, log.reason = ReminderLog.Status.PENDING, "Resend approved by ops."
        log.save(update_fields=["status", "reason", "sent_at"])
        audit_record(actor=actor, action=AuditAction.REMINDER_RESOLVED, obj=log, delivered=delivered)
    if not delivered:
        try:
            outcome = reminder_deliver(log_id=log_id)
        except ReminderNotSent as error:
            raise ServiceError(f"Reminder #{log_id} was not sent: {error}") from error
        except DatabaseUnavailable as error:
            raise ServiceError(f"Reminder #{log_id}: {error}; it may be in doubt again.") from error
        if outcome == Delivery.BEING_PAID:
            raise ServiceError(f"Reminder #{log_id} was not sent: its invoices are being paid right now.")
        log = ReminderLog.objects.filter(pk=log_id).first() or log
    return log


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
    undeliverable: list[int] = field(default_factory=list)  # skipped: the address was reported bouncing
    # Pending reminders of the day this run tried: reminded + skipped_paid + failures + in_doubt_now + elsewhere
    # + bounced_meanwhile.
    attempted: int = 0
    bounced_meanwhile: int = 0  # the address was reported bouncing between planning and sending
    skipped_paid: int = 0
    in_doubt_now: int = 0  # interrupted while this run was sending them
    elsewhere: int = 0  # taken by another run or the sweep meanwhile
    in_doubt: int = 0  # all reminders in doubt, from this run or earlier ones: ops look at each
    interrupted: str = ""
    would_remind: list[int] = field(default_factory=list)  # a dry run's patient ids

    @property
    def ok(self) -> bool:
        return not (self.failures or self.in_doubt or self.interrupted)


class ReminderRunInterrupted(Exception):
    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.interrupted)
        self.summary = summary


def reminders_run(
    *, as_of: date | None = None, dry_run: bool = False, triggered_by: str = "beat", progress: Progress | None = None
) -> RunSummary:
    """Plan today's reminders, then deliver every pending one for the day (including an interrupted run's).

    Raises ReminderRunInterrupted (with the figures so far) when the database stays away; the run is then
    recorded as interrupted, by this process if it can, else by the next run.
    """
    as_of = as_of or timezone.localdate()
    summary = RunSummary(
        run_id=0,
        as_of=as_of,
        dry_run=dry_run,
        due=0,
        reminded=0,
        invoices=0,
        no_email=[],
        already_today=0,
        failures=0,
    )
    try:
        run = _with_database(
            lambda: ReminderRun.objects.create(
                as_of=as_of, dry_run=dry_run, triggered_by=triggered_by, heartbeat_at=timezone.now()
            )
        )
    except DatabaseUnavailable as error:  # down before anything happened: nothing to record, nothing sent
        summary.interrupted = f"Interrupted: {error}; nothing was sent. Run send_reminders again once it is back."
        raise ReminderRunInterrupted(summary) from error
    summary.run_id = run.pk
    plan = PlanResult()
    try:
        if not dry_run:
            _with_database(reminders_mark_interrupted)
        plan = _with_database(lambda: reminders_plan(run=run, progress=progress))
        summary.due, summary.invoices = plan.due, plan.invoices
        summary.no_email, summary.already_today = plan.no_email, plan.already_today
        summary.undeliverable = plan.undeliverable
        summary.reminded = plan.planned if dry_run else 0
        summary.would_remind = plan.planned_ids
        if not dry_run:
            pending = _with_database(
                lambda: list(
                    ReminderLog.objects.filter(sent_on=as_of, status=ReminderLog.Status.PENDING)
                    .order_by("id")
                    .values_list("id", flat=True)
                )
            )
            for done, log_id in enumerate(pending, start=1):
                summary.attempted += 1
                try:
                    outcome = reminder_deliver(log_id=log_id)
                    if outcome == Delivery.SENT:
                        summary.reminded += 1
                    elif outcome == Delivery.ELSEWHERE:
                        summary.elsewhere += 1
                    elif outcome == Delivery.UNDELIVERABLE:
                        summary.bounced_meanwhile += 1
                    else:
                        summary.skipped_paid += 1
                except ReminderNotSent:
                    summary.failures += 1
                    logger.warning("reminder %s was refused by the mail server; it waits for the next run", log_id)
                except DatabaseUnavailable as error:
                    # The summary must still add up: a send handed to the mail server but not recorded is in
                    # doubt; one the database refused to claim was not attempted (it stays pending).
                    if error.in_flight:
                        summary.in_doubt_now += 1
                    else:
                        summary.attempted -= 1
                    raise
                except Exception:  # e.g. a timeout after DATA: the message may have gone out
                    summary.in_doubt_now += 1
                    logger.exception("reminder %s: sending was interrupted; its outcome is in doubt", log_id)
                    _with_database(
                        lambda log_id=log_id: ReminderLog.objects.filter(  # type: ignore[misc]
                            pk=log_id, status=ReminderLog.Status.SENDING
                        ).update(
                            status=ReminderLog.Status.IN_DOUBT,
                            reason="Sending was interrupted: it may have been delivered. Not resent; check the "
                            "mail log.",
                        )
                    )
                if done % 100 == 0:
                    _with_database(lambda: ReminderRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now()))
                if progress:
                    progress("send", done, len(pending))
            # This run leaves nothing "sending": any such row is another run's, live or killed. Counted, so that a
            # rerun right after a kill does not look clean.
            summary.in_doubt = _with_database(lambda: ReminderLog.objects.filter(status__in=UNSETTLED).count())
    except DatabaseUnavailable as error:
        summary.interrupted = f"Interrupted: {error}. Run send_reminders again once the database is back."
        summary.in_doubt = max(summary.in_doubt, summary.in_doubt_now)  # the database cannot be asked for more
        try:
            _with_database(
                lambda: ReminderRun.objects.filter(pk=run.pk).update(
                    status=ReminderRun.Status.INTERRUPTED,
                    finished_at=timezone.now(),
                    patients_reminded=summary.reminded,
                    failures=summary.failures,
                    in_doubt=summary.in_doubt,
                    error=summary.interrupted,
                )
            )
        except DatabaseUnavailable:
            logger.error("reminder run %s could not be recorded as interrupted; the next run will", run.pk)
        raise ReminderRunInterrupted(summary) from error
    except Exception as error:
        ReminderRun.objects.filter(pk=run.pk).update(
            status=ReminderRun.Status.FAILED, finished_at=timezone.now(), error=str(error)[:2000]
        )
        raise
    ReminderRun.objects.filter(pk=run.pk).update(
        status=ReminderRun.Status.FINISHED,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        patients_reminded=summary.reminded,
        invoices_covered=plan.invoices,
        skipped_no_email=len(plan.no_email),
        skipped_undeliverable=len(plan.undeliverable) + summary.bounced_meanwhile,
        skipped_already_today=plan.already_today,
        failures=summary.failures,
        in_doubt=summary.in_doubt,
    )
    if plan.no_email and not dry_run:
        audit_record(actor=SYSTEM, action=AuditAction.REMINDERS_NO_EMAIL, obj=run, patient_ids=plan.no_email[:500])
    if plan.undeliverable and not dry_run:
        audit_record(
            actor=SYSTEM,
            action=AuditAction.REMINDERS_EMAIL_UNDELIVERABLE,
            obj=run,
            patient_ids=plan.undeliverable[:500],
        )
    return summary
