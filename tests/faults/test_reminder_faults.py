"""Issue 9: send_reminders against a private PostgreSQL cluster that restarts, stops, drops connections, or whose
caller is killed, mid-run, with a real SMTP server (aiosmtpd) that can refuse a message.

What must hold: after any interruption a same-day rerun sends every planned patient exactly once; a send whose
outcome is in doubt is never resent blindly and is listed for ops with its Message-ID; an interrupted run ends
with a short message, a non-zero exit, and is recorded as interrupted; the summary adds up; failures exit non-zero.

Nothing here uses pytest-django's database: every step is a subprocess (`manage.py migrate`, the seeding script,
`manage.py send_reminders`) with DATABASE_URL pointing at the private cluster, and the assertions read the
cluster with psycopg2 and the messages the SMTP server received.
"""

import email
import email.policy
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.faults.pg import PrivateCluster, private_postgres
from tests.payments.stripe_fake import free_port

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-26"
N = 10  # patients, each due exactly one reminder on AS_OF
K = 4  # the message during which the fault is injected
EMAILS = [f"fault-patient-{n:02d}@example.com" for n in range(1, N + 1)]
EVERYONE_ONCE = {address: 1 for address in EMAILS}
COMMAND_TIMEOUT = 120  # seconds; no subprocess may hang CI
_names = itertools.count(1)


# --- the mail server ---------------------------------------------------------------------------------------------
@dataclass
class Received:
    recipient: str
    message_id: str
    accepted: bool  # False: we answered 5xx, so the client knows it was not delivered


@dataclass
class Inbox:
    """Records every message it is handed; `hook(k)` runs on the k-th one before the answer (None means 250)."""

    hook: Callable[[int], str | None] | None = None
    received: list[Received] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            k = len(self.received) + 1
            entry = Received(envelope.rcpt_tos[0], str(message["Message-ID"]), accepted=True)
            self.received.append(entry)
        try:
            answer = self.hook(k) if self.hook else None  # blocks this server's loop: the client waits for its 250
        except Exception as error:  # e.g. pg_ctl failed: surfaced by the fixture, not lost in the server's thread
            self.errors.append(error)
            raise
        if answer and answer.startswith("5"):
            entry.accepted = False
            return answer
        return "250 Message accepted for delivery"

    def delivered(self) -> Counter[str]:
        return Counter(r.recipient for r in self.received if r.accepted)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        controller.stop()
    assert not box.errors, f"the SMTP hook failed: {box.errors!r}"


# --- the database ------------------------------------------------------------------------------------------------
def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "CELERY_QUEUE", "EMAIL_URL", "REMINDER_DB_RETRY_SECONDS", "CELERY_TASK_ALWAYS_EAGER"}
    }  # no REDIS_URL: tasks would run eagerly, and nothing in send_reminders needs the broker
    env.update(
        DJANGO_SETTINGS_MODULE="alma_billing.settings_test",
        DATABASE_URL=database_url,
        CONN_MAX_AGE="60",  # production's default: the run keeps one connection, which the faults break
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def _run(args: list[str], env: dict[str, str], started: Callable[[int], None] | None = None) -> "Result":
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if started:
        started(proc.pid)
    try:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{args} did not finish in {COMMAND_TIMEOUT}s\nstdout:\n{out}\nstderr:\n{err}") from None
    return Result(proc.returncode, out, err)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """One private cluster for the module; migrated and seeded once into a template database."""
    with private_postgres() as pg:
        pg.create_database("alma_template")
        url = pg.url("alma_template")
        for step in (
            ["manage.py", "migrate", "--no-input", "-v0"],
            ["-m", "tests.faults.seed_reminders", "--patients", str(N), "--as-of", AS_OF],
        ):
            result = _run(step, _env(url))
            assert result.code == 0, f"{step}: {result}\n{pg.log_text()}"
        yield pg


@dataclass
class Db:
    cluster: PrivateCluster
    name: str
    smtp_port: int

    def send_reminders(self, *args: str, started: Callable[[int], None] | None = None, **env: str) -> Result:
        return _run(
            ["manage.py", "send_reminders", *args],
            _env(self.cluster.url(self.name), EMAIL_URL=f"smtp://127.0.0.1:{self.smtp_port}", **env),
            started,
        )

    def run_reminders(self, **env: str) -> Result:
        return self.send_reminders("--as-of", AS_OF, started=None, **env)

    def sql(self, statement: str, *params: object) -> list[tuple]:
        return self.cluster.sql(statement, params, dbname=self.name)

    def rows(self) -> dict[str, tuple[int, str, int]]:
        """email -> (reminder id, status, patient id) for AS_OF."""
        found = self.sql(
            "SELECT p.email, r.id, r.status, p.id FROM invoices_reminderlog r"
            " JOIN invoices_patient p ON p.id = r.patient_id WHERE r.sent_on = %s",
            AS_OF,
        )
        return {mail: (rid, status, pid) for mail, rid, status, pid in found}

    def statuses(self) -> dict[str, str]:
        return {mail: status for mail, (_, status, _) in self.rows().items()}

    def runs(self) -> list[str]:
        return [status for (status,) in self.sql("SELECT status FROM invoices_reminderrun ORDER BY id")]

    def age(self) -> None:
        """Pretend the rerun happens later: a row claimed 6 minutes ago and a heartbeat 16 minutes old are past
        SENDING_STALE_AFTER (5 min) and RUN_HEARTBEAT_STALE_AFTER (15 min), as they would be for a real rerun."""
        self.sql("UPDATE invoices_reminderlog SET claimed_at = claimed_at - interval '6 min' WHERE status = 'sending'")
        self.sql(
            "UPDATE invoices_reminderrun SET heartbeat_at = heartbeat_at - interval '16 min' WHERE status = 'running'"
        )


@pytest.fixture
def db(cluster: PrivateCluster, inbox: Inbox) -> Iterator[Db]:
    """A fresh copy of the migrated, seeded template for each test (CREATE DATABASE ... TEMPLATE: fast)."""
    name = f"t_{next(_names)}"
    cluster.create_database(name, template="alma_template")
    try:
        yield Db(cluster, name, inbox.port)  # type: ignore[attr-defined]
    finally:
        cluster.ensure_running()  # a test that stopped it and failed must not break the next one
        cluster.drop_database(name)


def summary_line(sent: int, refused: int = 0, in_doubt: int = 0, paid: int = 0) -> str:
    total = sent + refused + in_doubt + paid
    return (
        f"Pending reminders sent now: {total} = {sent} sent + {paid} paid or being paid meanwhile"
        f" + {refused} refused (sent again on the next run) + {in_doubt} interrupted mid-send (in doubt)"
    )


# --- the faults --------------------------------------------------------------------------------------------------
def test_postgres_restarted_mid_run_reconnects_and_sends_everyone_once(db: Db, inbox: Inbox) -> None:
    inbox.hook = lambda k: db.cluster.restart("fast") if k == K else None

    result = db.run_reminders()

    assert result.code == 0, result
    assert dict(inbox.delivered()) == EVERYONE_ONCE
    assert set(db.statuses().values()) == {"sent"} and len(db.statuses()) == N
    assert db.runs() == ["finished"]
    assert summary_line(sent=N) in result.out, result
    assert "In doubt: 0" in result.out and "Failures: 0" in result.out
    assert "Traceback" not in result.err, result
    assert "database unavailable" in result.err  # the restart did hit the run, which reconnected


def test_postgres_down_past_the_retry_budget_interrupts_then_rerun_sends_the_rest_and_lists_the_doubt(
    db: Db, inbox: Inbox
) -> None:
    inbox.hook = lambda k: db.cluster.stop("fast") if k == K else None

    result = db.run_reminders(REMINDER_DB_RETRY_SECONDS="3")

    assert result.code != 0, result
    assert "Traceback" not in result.err, result
    last = result.err.strip().splitlines()[-1]
    assert "Interrupted: " in last and len(last) < 200, result
    assert summary_line(sent=K - 1, in_doubt=1) in result.out and "In doubt: 1" in result.out, result  # adds up
    db.cluster.start()
    fourth = inbox.received[K - 1].recipient
    rows = db.rows()
    assert rows[fourth][1] == "sending"  # handed to the mail server, never recorded as sent
    # The database was gone, so the run could not record itself: it stays "running" until the next run sees its
    # heartbeat is old (aged here instead of waiting 15 minutes) and records it as interrupted.
    assert db.runs() == ["running"]
    db.age()

    rerun = db.run_reminders()

    assert rerun.code != 0, rerun  # one reminder is in doubt: ops must look
    assert dict(inbox.delivered()) == EVERYONE_ONCE  # the fourth was not resent
    statuses = db.statuses()
    assert statuses.pop(fourth) == "in_doubt" and set(statuses.values()) == {"sent"}
    assert db.runs() == ["interrupted", "finished"]
    assert summary_line(sent=N - K) in rerun.out and "In doubt: 1" in rerun.out, rerun
    assert "--mark-delivered ID or --resend ID" in rerun.out
    assert "Traceback" not in rerun.err, rerun

    listed = db.send_reminders("--in-doubt")
    reminder_id, _, patient_id = rows[fourth]
    message_id = inbox.received[K - 1].message_id
    assert listed.code == 0, listed
    assert re.fullmatch(r"<reminder-\d+@[^>]+>", message_id)
    assert f"#{reminder_id} patient #{patient_id} {AS_OF}" in listed.out and f"Message-ID {message_id}" in listed.out

    resolved = db.send_reminders("--mark-delivered", str(reminder_id))
    assert resolved.code == 0, resolved
    assert db.statuses()[fourth] == "sent"
    final = db.run_reminders()
    assert final.code == 0, final
    assert summary_line(sent=0) in final.out and "Skipped, already reminded today: 10" in final.out, final
    assert dict(inbox.delivered()) == EVERYONE_ONCE


def test_one_dropped_connection_costs_nothing_and_a_rerun_sends_nothing_more(db: Db, inbox: Inbox) -> None:
    dropped: list[int] = []
    inbox.hook = lambda k: dropped.append(db.cluster.terminate_backends(db.name)) if k == K else None

    result = db.run_reminders()

    assert dropped == [1]  # the run's own connection, idle between its commits
    assert result.code == 0, result
    assert dict(inbox.delivered()) == EVERYONE_ONCE
    assert set(db.statuses().values()) == {"sent"} and len(db.statuses()) == N  # not "failed" (issue 9)
    assert summary_line(sent=N) in result.out and "Traceback" not in result.err, result

    rerun = db.run_reminders()
    assert rerun.code == 0, rerun
    assert summary_line(sent=0) in rerun.out, rerun
    assert dict(inbox.delivered()) == EVERYONE_ONCE
    assert db.runs() == ["finished", "finished"]


def test_sigkill_mid_send_then_rerun_sends_the_rest_once_and_leaves_the_doubt_to_ops(db: Db, inbox: Inbox) -> None:
    pid: list[int] = []
    inbox.hook = lambda k: os.kill(pid[0], signal.SIGKILL) if k == K else None

    killed = db.send_reminders("--as-of", AS_OF, started=pid.append)

    assert killed.code == -signal.SIGKILL, killed
    fourth = inbox.received[K - 1].recipient
    assert db.statuses()[fourth] == "sending" and db.runs() == ["running"]
    db.age()  # the rerun comes later (aged rather than waited for)

    rerun = db.run_reminders()

    assert rerun.code != 0, rerun  # in doubt
    delivered = inbox.delivered()
    assert delivered[fourth] <= 1
    assert {a: n for a, n in delivered.items() if a != fourth} == {a: 1 for a in EMAILS if a != fourth}
    statuses = db.statuses()
    assert statuses.pop(fourth) == "in_doubt" and set(statuses.values()) == {"sent"}
    assert db.runs() == ["interrupted", "finished"]
    assert summary_line(sent=N - K) in rerun.out and "In doubt: 1" in rerun.out, rerun
    assert "Traceback" not in rerun.err, rerun


def test_a_refused_recipient_is_retried_by_the_same_day_rerun_and_sent_once(db: Db, inbox: Inbox) -> None:
    inbox.hook = lambda k: "550 5.1.1 no such user" if k == K else None

    result = db.run_reminders()

    assert result.code != 0, result
    assert "Failures: 1" in result.out and summary_line(sent=N - 1, refused=1) in result.out, result
    refused = inbox.received[K - 1].recipient
    statuses = db.statuses()
    assert statuses.pop(refused) == "pending" and set(statuses.values()) == {"sent"}
    assert inbox.delivered()[refused] == 0
    assert "Traceback" not in result.err, result

    rerun = db.run_reminders()

    assert rerun.code == 0, rerun
    assert summary_line(sent=1) in rerun.out, rerun
    assert dict(inbox.delivered()) == EVERYONE_ONCE
    assert set(db.statuses().values()) == {"sent"}
    assert db.runs() == ["finished", "finished"]


def test_postgres_down_when_the_run_starts_ends_with_a_short_message(db: Db, inbox: Inbox) -> None:
    db.cluster.stop("fast")

    result = db.run_reminders(REMINDER_DB_RETRY_SECONDS="2")

    assert result.code != 0, result
    assert "Traceback" not in result.err, result
    last = result.err.strip().splitlines()[-1]
    assert "Interrupted: " in last and len(last) < 200, result
    assert inbox.received == []
    db.cluster.start()
    assert db.runs() == []  # nothing could be recorded; nothing is left "running" either

    rerun = db.run_reminders()
    assert rerun.code == 0, rerun
    assert dict(inbox.delivered()) == EVERYONE_ONCE
