"""python manage.py import_remittance FILE... [--dry-run]: settle claims from X12 835 remittance files (P13)."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from claims.services import remittance_import
from claims.x12 import RemittanceFileError


class Command(BaseCommand):
    help = "Import X12 835 remittances: each file is applied all or nothing; importing one twice changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--dry-run", action="store_true", help="say what each file would do; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        failed = []
        verbose = options["verbosity"] >= 1
        for name in options["files"]:
            if verbose:
                self.stderr.write(f"{name}: reading…")
            path = Path(name)
            try:
                raw_text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as error:
                self.stderr.write(f"{name}: not imported: cannot read it as an ASCII X12 file ({error}).")
                failed.append(name)
                continue
            try:
                summary = remittance_import(raw_text=raw_text, file_name=path.name, dry_run=options["dry_run"])
            except RemittanceFileError as error:
                self.stderr.write(f"{name}: not imported, nothing changed: {error}")
                failed.append(name)
                continue
            counts = ", ".join(f"{count} {words}" for words, count in summary.counts().items())
            prefix = "would import (dry run, nothing changed)" if options["dry_run"] else "imported"
            if verbose:
                self.stdout.write(f"{name}: {prefix}: {counts}")
            if summary.refunds_waiting:
                self.stderr.write(f"{summary.refunds_waiting} refund(s) wait for Stripe; the next import retries them.")
        if failed:
            raise CommandError(f"{len(failed)} file(s) not imported: {', '.join(failed)}")
