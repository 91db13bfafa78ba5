"""P3 for ops: send today's reminders (or preview them), with progress and a summary."""

import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoices.reminders import reminders_run


class Command(BaseCommand):
    help = "Email one reminder per patient who is due, listing everything open, with a fresh link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="show who would be reminded; send nothing")
        parser.add_argument("--as-of", type=str, help="evaluate the schedule as of this day (YYYY-MM-DD)")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = None
        if options["as_of"]:
            try:
                as_of = date.fromisoformat(options["as_of"])
            except ValueError as error:
                raise CommandError("--as-of must be a date like 2026-11-26.") from error
        tty = sys.stdout.isatty()

        def progress(phase: str, done: int, total: int) -> None:
            label = "Planning" if phase == "plan" else "Sending"
            width = 30
            filled = width * done // max(total, 1)
            line = f"{label:9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            if tty:
                self.stdout.write("\r" + line, ending="\n" if done >= total else "")
                self.stdout.flush()
            elif done >= total or done % 1000 == 0:
                self.stdout.write(line)

        summary = reminders_run(as_of=as_of, dry_run=options["dry_run"], triggered_by="manage.py", progress=progress)
        verb = "would be reminded" if summary.dry_run else "reminded"
        self.stdout.write(
            self.style.SUCCESS(
                f"Reminder run #{summary.run_id} for {summary.as_of}"
                f"{' (dry run: nothing sent)' if summary.dry_run else ''}"
            )
        )
        self.stdout.write(f"  Patients {verb}: {summary.reminded}")
        self.stdout.write(f"  Invoices covered: {summary.invoices}")
        self.stdout.write(f"  Skipped, already reminded today: {summary.already_today}")
        self.stdout.write(
            f"  Skipped, no email on file: {len(summary.no_email)}"
            + (
                f" (patient ids: {', '.join(map(str, summary.no_email[:20]))}"
                f"{'…' if len(summary.no_email) > 20 else ''})"
                if summary.no_email
                else ""
            )
        )
        self.stdout.write(
            f"  Failures: {summary.failures}" + (" (see the log; retried on the next run)" if summary.failures else "")
        )
