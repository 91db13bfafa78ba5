"""P3: reminders until paid, one per patient per day whatever happens, listing everything open with a fresh link."""

import re
import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from invoices.models import Invoice, ReminderLog, ReminderRun
from invoices.reminders import latest_reminder_day, reminders_plan, reminders_run
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 26)


def issued(patient, days_ago: int, amount: int = 7_000, **kwargs) -> Invoice:
    invoice = InvoiceFactory(session__patient=patient, amount_cents=amount, **kwargs)
    at = timezone.make_aware(datetime(2026, 11, 26, 9, 0)) - timedelta(days=days_ago)
    Invoice.objects.filter(pk=invoice.pk).update(issued_at=at)
    return invoice


def reminders_to(email: str) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.to == [email] and m.subject.startswith("Reminder")]


@pytest.mark.parametrize(
    ("age", "point"),
    [
        (0, None),
        (2, None),
        (3, 3),
        (6, 3),
        (7, 7),
        (13, 7),
        (14, 14),
        (21, 21),
        (29, 21),
        (30, 30),
        (43, 30),
        (44, 44),
        (57, 44),
        (58, 58),
    ],
)
def test_p3_schedule_is_3_7_14_21_30_days_then_every_14(age: int, point: int | None) -> None:
    day = latest_reminder_day(issued_on=TODAY - timedelta(days=age), as_of=TODAY)
    assert day == (None if point is None else TODAY - timedelta(days=age) + timedelta(days=point))


def test_p3_one_email_per_patient_lists_everything_open_with_one_fresh_link() -> None:
    patient = PatientFactory()
    invoices = [issued(patient, 3, 4_000), issued(patient, 10, 5_500), issued(patient, 1, 7_000)]

    summary = reminders_run(as_of=TODAY)

    (email,) = reminders_to(patient.email)
    assert email.subject == "Reminder: you have 3 open invoices from Alma"
    for invoice in invoices:
        assert invoice.number in email.body
    assert "Total: $165.00" in email.body
    assert len(re.findall(r"/pay/[A-Za-z0-9_-]{43}/", str(email.body))) == 1
    assert "therap" not in email.body.lower() and patient.last_name not in email.body
    assert summary.reminded == 1 and summary.invoices == 3
    assert ReminderLog.objects.get().status == ReminderLog.Status.SENT


def test_p3_at_most_one_reminder_per_patient_per_day_and_only_at_schedule_points() -> None:
    patient = PatientFactory()
    issued(patient, 3)

    reminders_run(as_of=TODAY)
    reminders_run(as_of=TODAY)  # run twice the same day
    reminders_run(as_of=TODAY + timedelta(days=1))  # day 4: no new point
    assert len(reminders_to(patient.email)) == 1

    reminders_run(as_of=TODAY + timedelta(days=4))  # day 7
    assert len(reminders_to(patient.email)) == 2


def test_p3_a_missed_day_is_caught_up_once() -> None:
    patient = PatientFactory()
    issued(patient, 9)  # day 3 and day 7 passed while nothing ran
    reminders_run(as_of=TODAY)
    reminders_run(as_of=TODAY + timedelta(days=1))
    assert len(reminders_to(patient.email)) == 1


def test_p3_nothing_for_paid_void_or_processing_invoices() -> None:
    paid, void, processing, fresh = (PatientFactory() for _ in range(4))
    issued(paid, 7, status=Invoice.Status.PAID)
    issued(void, 7, status=Invoice.Status.VOID)
    issued(processing, 7, status=Invoice.Status.PROCESSING)
    issued(fresh, 1)

    summary = reminders_run(as_of=TODAY)

    assert summary.reminded == 0 and not mail.outbox


def test_p3_an_invoice_paid_between_plan_and_send_is_not_reminded() -> None:
    patient = PatientFactory()
    invoice = issued(patient, 7)
    run = ReminderRun.objects.create(as_of=TODAY)
    reminders_plan(run=run)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID)

    reminders_run(as_of=TODAY)

    assert not mail.outbox
    assert ReminderLog.objects.get().status == ReminderLog.Status.SKIPPED


def test_p3_outside_payment_does_not_stop_reminders() -> None:
    patient = PatientFactory()
    issued(patient, 7, outside_payment_reported_at=timezone.now(), outside_payment_note="Paid the provider in cash")
    reminders_run(as_of=TODAY)
    assert len(reminders_to(patient.email)) == 1


def test_p3_patient_without_email_is_reported_to_ops() -> None:
    patient = PatientFactory(email="")
    issued(patient, 3)

    summary = reminders_run(as_of=TODAY)

    assert summary.no_email == [patient.pk] and summary.reminded == 0
    log = ReminderLog.objects.get()
    assert log.status == ReminderLog.Status.SKIPPED and log.reason == "No email address on file."
    assert AuditEvent.objects.filter(action="reminders.no_email", data__patient_ids=[patient.pk]).exists()
    assert ReminderRun.objects.get(pk=summary.run_id).skipped_no_email == 1
    reminders_run(as_of=TODAY + timedelta(days=1))  # not reported again until the next point
    assert ReminderLog.objects.count() == 1


def test_p3_dry_run_sends_and_records_nothing(capsys) -> None:
    patient = PatientFactory()
    issued(patient, 3)
    call_command("send_reminders", "--dry-run", "--as-of", TODAY.isoformat())
    out = capsys.readouterr().out
    assert "dry run: nothing sent" in out and "Patients would be reminded: 1" in out
    assert f"patient ids: {patient.pk}" in out and patient.last_name not in out  # ids, never names
    assert not mail.outbox and not ReminderLog.objects.exists()


def test_p3_command_prints_a_summary_for_ops(capsys) -> None:
    issued(PatientFactory(), 3)
    issued(PatientFactory(email=""), 3)
    call_command("send_reminders", "--as-of", TODAY.isoformat())
    captured = capsys.readouterr()
    out = captured.out
    assert "Sending   [##############################] 1/1" in captured.err  # progress on stderr, summary on stdout
    assert "Pending reminders sent now: 1 = 1 sent + 0 paid or being paid meanwhile + 0 refused" in out
    assert "Patients reminded: 1" in out and "Invoices covered: 1" in out
    assert "Skipped, no email on file: 1" in out and "Failures: 0" in out


def test_p3_bad_as_of_is_explained() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--as-of must be a date"):
        call_command("send_reminders", "--as-of", "yesterday")


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the run catches it."""


def test_p3_a_run_killed_half_way_and_restarted_sends_no_duplicate_and_skips_no_one(settings) -> None:
    patients = [PatientFactory() for _ in range(10)]
    for patient in patients:
        issued(patient, 3)
    settings.EMAIL_BACKEND = "tests.invoices.test_reminders.DyingBackend"
    DyingBackend.sent, DyingBackend.die_after = [], 4

    with pytest.raises(Killed):
        reminders_run(as_of=TODAY)
    assert len(DyingBackend.sent) == 4
    killed_run = ReminderRun.objects.get()
    assert killed_run.status == ReminderRun.Status.RUNNING  # as a killed process leaves it
    # The fifth was being handed to the mail server when the process died: it may or may not have gone out.
    (in_flight,) = ReminderLog.objects.filter(status=ReminderLog.Status.SENDING)
    ReminderLog.objects.filter(pk=in_flight.pk).update(claimed_at=timezone.now() - timedelta(minutes=6))
    ReminderRun.objects.filter(pk=killed_run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=20))
    assert ReminderRun.objects.get().status_shown.startswith("Interrupted")

    DyingBackend.die_after = None
    summary = reminders_run(as_of=TODAY)

    recipients = [m.to[0] for m in DyingBackend.sent]
    assert len(recipients) == len(set(recipients)) == 9  # nobody twice; the one in doubt is not resent blindly
    assert in_flight.patient.email not in recipients
    assert summary.reminded == 5 and summary.in_doubt == 1 and not summary.ok
    assert ReminderLog.objects.get(pk=in_flight.pk).status == ReminderLog.Status.IN_DOUBT
    assert ReminderRun.objects.get(pk=killed_run.pk).status == ReminderRun.Status.INTERRUPTED

    # Ops checked the mail log: it never arrived. Resending sends it once; resending again is refused.
    call_command("send_reminders", "--resend", str(in_flight.pk))
    assert [m.to[0] for m in DyingBackend.sent].count(in_flight.patient.email) == 1
    with pytest.raises(CommandError, match="not in doubt"):
        call_command("send_reminders", "--resend", str(in_flight.pk))
    assert ReminderLog.objects.filter(status=ReminderLog.Status.SENT).count() == 10


class DyingBackend(BaseEmailBackend):
    sent: list[mail.EmailMessage] = []
    die_after: int | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def send_messages(self, messages: Sequence[mail.EmailMessage]) -> int:
        if DyingBackend.die_after is not None and len(DyingBackend.sent) >= DyingBackend.die_after:
            raise Killed()
        DyingBackend.sent.extend(messages)
        return len(messages)


def test_p3_a_failed_send_is_counted_and_retried_on_the_next_run(settings) -> None:
    patient = PatientFactory()
    issued(patient, 3)
    settings.EMAIL_BACKEND = "tests.invoices.test_reminders.BrokenBackend"
    summary = reminders_run(as_of=TODAY)
    # Refused by the mail server: nothing went out, so it waits for the next run, and the summary says so.
    assert summary.failures == 1 and ReminderLog.objects.get().status == ReminderLog.Status.PENDING
    assert summary.attempted == summary.reminded + summary.skipped_paid + summary.failures + summary.in_doubt_now

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    again = reminders_run(as_of=TODAY)  # a same-day rerun sends it, once
    assert again.reminded == 1 and len(reminders_to(patient.email)) == 1
    reminders_run(as_of=TODAY)
    assert len(reminders_to(patient.email)) == 1


class BrokenBackend(BaseEmailBackend):
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def send_messages(self, messages: Sequence[mail.EmailMessage]) -> int:
        raise ConnectionRefusedError("mail server down")


def test_p3_planning_uses_a_fixed_number_of_queries_per_chunk(settings) -> None:
    settings.REMINDER_CHUNK_SIZE = 10

    def queries_for(count: int) -> int:
        ReminderLog.objects.all().delete()
        Invoice.objects.all().delete()
        for _ in range(count):
            patient = PatientFactory()
            issued(patient, 3)
            issued(patient, 9)
        run = ReminderRun.objects.create(as_of=TODAY)
        with CaptureQueriesContext(connection) as captured:
            reminders_plan(run=run)
        return len(captured)

    one, two, four = queries_for(10), queries_for(20), queries_for(40)
    per_chunk = two - one
    assert per_chunk <= 4
    assert four - two == 2 * per_chunk


@pytest.mark.django_db(transaction=True)
def test_p3_two_runs_at_once_send_one_reminder_each(postgres: None) -> None:
    patients = [PatientFactory() for _ in range(30)]
    for patient in patients:
        issued(patient, 7)
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            reminders_run(as_of=TODAY)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(m.to[0] for m in mail.outbox) == sorted(p.email for p in patients)
    assert ReminderLog.objects.filter(status=ReminderLog.Status.SENT).count() == 30


def test_p3_a_patient_paying_at_send_time_is_reminded_next_run_if_the_payment_fails() -> None:
    patient = PatientFactory()
    invoice = issued(patient, 7)
    run = ReminderRun.objects.create(as_of=TODAY)
    reminders_plan(run=run)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PROCESSING)  # a card check under way
    reminders_run(as_of=TODAY)
    assert not mail.outbox

    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.OPEN)  # the payment failed
    reminders_run(as_of=TODAY + timedelta(days=1))
    assert len(reminders_to(patient.email)) == 1


class UnreachableBackend(BaseEmailBackend):
    """A mail server that cannot be reached: opening the connection fails, so nothing is ever handed over."""

    def open(self) -> bool:
        raise TimeoutError("connect timed out")

    def send_messages(self, messages: Sequence[mail.EmailMessage]) -> int:
        raise AssertionError("never called: the connection did not open")


def test_p3_a_mail_server_that_cannot_be_reached_leaves_reminders_pending_not_in_doubt(settings) -> None:
    patients = [PatientFactory() for _ in range(3)]
    for patient in patients:
        issued(patient, 3)
    settings.EMAIL_BACKEND = "tests.invoices.test_reminders.UnreachableBackend"

    summary = reminders_run(as_of=TODAY)

    assert summary.failures == 3 and summary.in_doubt == 0 and summary.in_doubt_now == 0
    assert set(ReminderLog.objects.values_list("status", flat=True)) == {ReminderLog.Status.PENDING}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    reminders_run(as_of=TODAY)
    assert all(len(reminders_to(p.email)) == 1 for p in patients)


def test_p3_a_reminder_left_pending_from_an_earlier_day_gives_way_to_the_newer_one(settings) -> None:
    patient = PatientFactory()
    issued(patient, 3)
    settings.EMAIL_BACKEND = "tests.invoices.test_reminders.BrokenBackend"
    reminders_run(as_of=TODAY)  # refused: pending for TODAY
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    reminders_run(as_of=TODAY + timedelta(days=4))  # the next point plans its own row and sends it
    from invoices.reminders import reminder_deliver

    old = ReminderLog.objects.get(sent_on=TODAY)
    reminder_deliver(log_id=old.pk)  # the sweep picks the old row up afterwards

    assert len(reminders_to(patient.email)) == 1
    old.refresh_from_db()
    assert old.status == ReminderLog.Status.SKIPPED and "Superseded" in old.reason


def test_p3_resolving_a_reminder_in_doubt_refuses_what_it_cannot_do() -> None:
    from alma_billing.core.audit import SYSTEM
    from alma_billing.core.errors import ServiceError
    from invoices.reminders import reminder_resolve

    patient = PatientFactory()
    invoice = issued(patient, 3)
    reminders_run(as_of=TODAY)
    log = ReminderLog.objects.get()
    with pytest.raises(ServiceError, match="not in doubt"):
        reminder_resolve(log_id=log.pk, delivered=False, actor=SYSTEM)
    with pytest.raises(ServiceError, match="no reminder #999999"):
        reminder_resolve(log_id=999_999, delivered=True, actor=SYSTEM)
    # In doubt, and meanwhile the patient started paying: nothing is sent, and ops are told why.
    ReminderLog.objects.filter(pk=log.pk).update(status=ReminderLog.Status.IN_DOUBT)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PROCESSING)
    with pytest.raises(ServiceError, match="being paid"):
        reminder_resolve(log_id=log.pk, delivered=False, actor=SYSTEM)
    assert len(reminders_to(patient.email)) == 1
