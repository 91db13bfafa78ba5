"""Jobs that tell the truth: every management command exits non-zero when something failed, says nothing on stdout
with -v0, writes progress to stderr and its summary to stdout, and refuses a bad --as-of without a traceback."""

import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from django_otp import user_has_device

from claims.samples import demo_835
from invoices.models import Invoice, Patient, ReminderLog
from tests.factories import InvoiceFactory, PatientFactory
from tests.needs import need

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as cron runs it, against the test database (PostgreSQL: another process cannot open the in-memory
    SQLite test database)."""
    need("PostgreSQL", connection.vendor == "postgresql", "a subprocess needs a database it can open")
    # A quiet job also sets LOG_LEVEL=WARNING: the application's own INFO logs go to stderr otherwise.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test", "LOG_LEVEL": "WARNING"}
    db = connection.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


AS_OF = date(2026, 11, 26)


def _due_patient(**fields: Any) -> Patient:
    """A patient with an invoice issued 3 days before AS_OF: a reminder is due that day."""
    patient = PatientFactory(**fields)
    invoice = InvoiceFactory(session__patient=patient)
    at = timezone.make_aware(datetime(2026, 11, 26, 9, 0)) - timedelta(days=3)
    Invoice.objects.filter(pk=invoice.pk).update(issued_at=at)
    return patient


# Exit codes, as a job runner sees them --------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", ["yesterday", "2026-02-30", "26-11-2026", "２０２６-11-26", "2026-11-26\x01"])
def test_a_bad_as_of_exits_1_with_a_clear_error_and_no_traceback(as_of: str) -> None:
    done = manage("send_reminders", "--as-of", as_of)
    assert done.returncode == 1
    assert "--as-of must be a date like 2026-11-26." in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_missing_argument_exits_2() -> None:
    done = manage("send_reminders", "--as-of")
    assert done.returncode == 2 and "expected one argument" in done.stderr and "Traceback" not in done.stderr


def test_a_file_that_cannot_be_read_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.835"
    done = manage("import_remittance", str(missing))
    assert done.returncode == 1 and str(missing) in done.stderr and "Traceback" not in done.stderr


def test_enrolling_an_unknown_user_exits_1() -> None:
    done = manage("staff_otp_enroll", "nobody-here")
    assert done.returncode == 1 and "No user named 'nobody-here'" in done.stderr


def test_a_quiet_run_with_nothing_to_do_exits_0_and_prints_nothing() -> None:
    done = manage("reconcile_payments", "-v0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


# -v0, progress on stderr, summary on stdout -------------------------------------------------------------------


def test_send_reminders_dry_run_lists_ids_not_names_and_writes_nothing() -> None:
    patient = _due_patient(last_name="Quietperson")
    out, _ = run("send_reminders", "--dry-run", "--as-of", AS_OF.isoformat())
    assert f"patient ids: {patient.pk}" in out and "Quietperson" not in out and patient.email not in out
    assert not ReminderLog.objects.exists() and not mail.outbox
    assert run("send_reminders", "--dry-run", "--as-of", AS_OF.isoformat(), "-v0") == ("", "")


def test_send_reminders_quiet_sends_and_prints_nothing() -> None:
    _due_patient()
    out, err = run("send_reminders", "--as-of", AS_OF.isoformat(), "-v0")
    assert (out, err) == ("", "")
    assert len(mail.outbox) == 1 and ReminderLog.objects.filter(status=ReminderLog.Status.SENT).count() == 1


def test_send_reminders_in_doubt_listing_is_quiet_with_v0() -> None:
    assert run("send_reminders", "--in-doubt")[0] == "No reminders in doubt.\n"
    assert run("send_reminders", "--in-doubt", "-v0") == ("", "")


def test_send_reminders_failure_exits_non_zero(settings: Any) -> None:
    _due_patient()
    settings.EMAIL_BACKEND = "tests.invoices.test_reminders.BrokenBackend"
    with pytest.raises(CommandError, match="1 reminder\\(s\\) failed"):
        run("send_reminders", "--as-of", AS_OF.isoformat(), "-v0")


def test_reconcile_writes_progress_to_stderr_and_the_summary_to_stdout() -> None:
    out, err = run("reconcile_payments")
    assert out.startswith("Checked 0 payment(s) in flight") and "Asking Stripe" in err
    assert run("reconcile_payments", "-v0") == ("", "")


def test_import_remittance_is_quiet_with_v0_and_summarises_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "era.835"
    path.write_text(demo_835({"jordan": "NOPE1", "sam_first": "NOPE2", "sam_second": "NOPE3"}))
    out, err = run("import_remittance", str(path), "--dry-run")
    assert "would import (dry run, nothing changed)" in out and "unmatched" in out and "reading" in err
    assert run("import_remittance", str(path), "--dry-run", "-v0") == ("", "")
    bad = tmp_path / "bad.835"
    bad.write_text("ISA*garbage~")
    with pytest.raises(CommandError, match="1 file\\(s\\) not imported"):
        run("import_remittance", str(bad), "-v0")


def test_staff_otp_commands_honour_v0() -> None:
    user = get_user_model().objects.create_user("staffer", is_staff=True)
    with pytest.raises(CommandError, match="run it without -v0. Nothing changed."):
        run("staff_otp_enroll", "staffer", "-v0")
    assert not user_has_device(user, confirmed=None)  # the secret would have been lost: nothing was enrolled
    out, _ = run("staff_otp_enroll", "staffer")
    assert "Second factor enrolled" in out
    assert run("staff_otp_reset", "staffer", "-v0") == ("", "")
    assert not user_has_device(user, confirmed=None)


def test_seed_demo_honours_v0(settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        out, err = run("seed_demo", "-v0")
    assert (out, err) == ("", "")
    assert Invoice.objects.filter(status=Invoice.Status.OPEN).count() == 4
    with django_capture_on_commit_callbacks(execute=True):
        out, err = run("seed_demo")
    assert "Demo data ready" in out and "Creating demo" in err
