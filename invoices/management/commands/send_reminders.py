"""P3 for ops: send today's reminders (or preview them), with progress on stderr and a summary on stdout.

Exits non-zero when anything failed, is in doubt, or the run was interrupted, so cron and job runners notice.
"""

import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alma_billing.core.audit import Actor
from alma_billing.core.errors import ServiceError
from invoices.reminders import (
    ReminderRunInterrupted,
    RunSummary,
    reminder_message_id,
    reminder_resolve,
    reminders_in_doubt,
    reminders_run,
)


class Command(BaseCommand):
    help = "Email one reminder per patient who is due, listing everything open, with a fresh link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="show who would be reminded; send nothing")
        parser.add_argument("--as-of", type=str, help="evaluate the schedule as of this day (YYYY-MM-DD)")
        parser.add_argument("--in-doubt", action="store_true", help="list reminders whose delivery is in doubt")
        parser.add_argument(
            "--mark-delivered", type=int, metavar="ID", help="a reminder in doubt was delivered (per the mail log)"
        )
        parser.add_argument(
            "--resend", type=int, metavar="ID", help="a reminder in doubt was not delivered (per the mail log): send it"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["in_doubt"]:
            return self._list_in_doubt() if options["verbosity"] >= 1 else None
        for flag, delivered in (("mark_delivered", True), ("resend", False)):
            if options[flag] is not None:
                try:
                    log = reminder_resolve(
                        log_id=options[flag], delivered=delivered, actor=Actor(label="manage.py send_reminders")
                    )
                except ServiceError as error:
                    raise CommandError(error.message) from error
                if options["verbosity"] >= 1:
                    self.stdout.write(f"Reminder #{log.pk} to patient #{log.patient_id}: {log.get_status_display()}.")
                return None
        as_of = None
        if options["as_of"]:
            try:
                as_of = date.fromisoformat(options["as_of"])
            except ValueError as error:
                raise CommandError("--as-of must be a date like 2026-11-26.") from error
        verbosity = options["verbosity"]
        tty = sys.stderr.isatty()

        def progress(phase: str, done: int, total: int) -> None:
            if verbosity < 1:
                return
            label = "Planning" if phase == "plan" else "Sending"
            width = 30
            filled = width * done // max(total, 1)
            line = f"{label:9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            if tty:
                self.stderr.write("\r" + line, ending="\n" if done >= total else "")
                self.stderr.flush()
            elif done >= total or done % 1000 == 0:
                self.stderr.write(line)

        try:
            summary = reminders_run(
                as_of=as_of, dry_run=options["dry_run"], triggered_by="manage.py", progress=progress
            )
        except ReminderRunInterrupted as interrupted:
            if interrupted.summary.run_id:  # 0: it could not even start, so there are no figures to show
                self._summary(interrupted.summary, verbosity)
            raise CommandError(interrupted.summary.interrupted) from None
        self._summary(summary, verbosity)
        if not summary.ok:
            raise CommandError(
                f"{summary.failures} reminder(s) failed and {summary.in_doubt} are in doubt: "
                "see 'Reminders in doubt' on /admin/dashboard/ or run send_reminders --in-doubt."
            )
        return None

    def _summary(self, summary: RunSummary, verbosity: int) -> None:
        if verbosity < 1:
            return
        verb = "would be reminded" if summary.dry_run else "reminded"
        self.stdout.write(
            f"Reminder run #{summary.run_id} for {summary.as_of}{' (dry run: nothing sent)' if summary.dry_run else ''}"
        )
        self.stdout.write(f"  Patients {verb}: {summary.reminded}")
        if summary.dry_run and summary.would_remind:
            shown = summary.would_remind[:50]
            more = summary.reminded - len(shown)
            self.stdout.write(f"    patient ids: {', '.join(map(str, shown))}{f' and {more} more' if more > 0 else ''}")
        self.stdout.write(f"  Invoices covered: {summary.invoices}")
        self.stdout.write(f"  Skipped, already reminded today: {summary.already_today}")
        ids = summary.no_email
        self.stdout.write(
            f"  Skipped, no email on file: {len(ids)}"
            + (f" (patient ids: {', '.join(map(str, ids[:20]))}{'…' if len(ids) > 20 else ''})" if ids else "")
        )
        bouncing = summary.undeliverable
        self.stdout.write(
            f"  Skipped, email undeliverable: {len(bouncing)}"
            + (
                f" (patient ids: {', '.join(map(str, bouncing[:20]))}{'…' if len(bouncing) > 20 else ''})"
                if bouncing
                else ""
            )
        )
        if not summary.dry_run:
            self.stdout.write(
                f"  Pending reminders sent now: {summary.attempted} = {summary.reminded} sent"
                f" + {summary.skipped_paid} paid or being paid meanwhile"
                f" + {summary.failures} refused (sent again on the next run)"
                f" + {summary.in_doubt_now} interrupted mid-send (in doubt)"
                f" + {summary.elsewhere} sent by another run meanwhile"
                f" + {summary.bounced_meanwhile} email reported undeliverable meanwhile"
            )
        self.stdout.write(
            f"  Failures: {summary.failures}"
            + (" (the mail server refused them; they are sent again on the next run)" if summary.failures else "")
        )
        self.stdout.write(
            f"  In doubt: {summary.in_doubt}"
            + (" (not resent: check the mail log, then --mark-delivered ID or --resend ID)" if summary.in_doubt else "")
        )

    def _list_in_doubt(self) -> None:
        rows = reminders_in_doubt()
        if not rows:
            self.stdout.write("No reminders in doubt.")
        for log in rows:
            still = " (still marked sending: a run is sending it, or was killed under 5 minutes ago)"
            self.stdout.write(
                f"#{log.pk} patient #{log.patient_id} {log.sent_on} claimed {log.claimed_at:%Y-%m-%d %H:%M} "
                f"Message-ID {reminder_message_id(log.pk)}{still if log.status == log.Status.SENDING else ''}"
            )
