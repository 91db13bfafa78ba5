"""Benchmark: the reminder run's planning phase against a raw-SQL floor, side by side, with its peak memory.

DESIGN.md "Performance targets": the reminder run is ≤ 3× a raw-SQL floor (select the due patients, insert their
log rows) at 10k and 100k invoices, and its peak memory is flat from 10k to 100k (≤ 300 MB).

For each size N the parent process seeds a throwaway `alma_bench_reminders` PostgreSQL database server-side
(INSERT ... SELECT FROM generate_series: no Python objects per row) with N open invoices across N/2 patients, two
each, issued 3, 7, 14, 21, 30, 44, 58 or 72 days before the as-of day so that every patient is due today (44, 58
and 72 exercise the every-REMINDER_REPEAT_DAYS branch); 2% of patients have no email (planned as skipped) and most
have older reminder rows (sent, or failed, which does not count). Then a fresh subprocess per size measures, so
memory numbers never mix across sizes:

* plan: `reminders_plan(run=ReminderRun.objects.create(as_of=...))`, median of --repeats timed runs;
* floor: one SELECT of the due patients (same schedule logic in SQL) and one INSERT ... SELECT of their log rows,
  on a raw psycopg2 connection, one commit; median of --repeats runs, alternated with the plan runs;
* memory: during the first plan run in the process, its RSS growth and the process's peak RSS (VmHWM, reset
  through /proc/self/clear_refs just before), and the tracemalloc peak of a separate plan run (tracemalloc slows
  Python down, so it never runs during a timed run);
* correctness: the plan inserts one row per due patient, a second plan on the same day inserts nothing, and the
  floor writes exactly the rows the plan writes (patient, status, reason, invoice ids, total).

Today's log rows are deleted (then VACUUM ANALYZE) between runs. Optionally (on by default, size 10,000 only) a
separate subprocess times the full `reminders_run` with the locmem email backend and reports emails/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/reminders.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import date
from typing import Any

import benchdb
import psycopg2.extensions

SCRIPT = "reminders.py"
BENCH_DB = os.environ.get("BENCH_REMINDERS_DB", "alma_bench_reminders")  # another name: two runs side by side
AGES = (3, 7, 14, 21, 30, 44, 58, 72)  # days between issue and the as-of day: each one a schedule point
PROVIDERS = 20
NO_EMAIL_EVERY = 50  # every 50th patient has no email address (2%)
RESULT_PREFIX = "RESULT "
RATIO_TARGET = 3.0
MEMORY_TARGET_MB = 300.0
FLAT_TOLERANCE = 1.25  # "flat": the 100k figure is at most 25% (or FLAT_SLACK_MB) above the 10k one
FLAT_SLACK_MB = 5.0


@dataclass(frozen=True)
class Measure:
    invoices: int
    patients: int
    due: int
    chunk_size: int
    plan_s: float
    plan_runs: list[float]
    floor_s: float
    floor_runs: list[float]
    rss_growth_mb: float
    plan_peak_rss_mb: float
    tracemalloc_peak_mb: float
    plan_queries: int
    checks: list[str]


# ---------------------------------------------------------------------------------------------------------------
# arguments and Django setup (database plumbing in bench/benchdb.py, shared with bench/issue_invoices.py)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="open invoices per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed plan and floor runs per size (median)")
    parser.add_argument("--no-deliver", action="store_true", help="skip the full reminders_run with delivery")
    parser.add_argument("--deliver-size", type=int, default=10_000, help="invoices for the delivery run")
    parser.add_argument("--keep-db", action="store_true", help=f"leave the {BENCH_DB} database behind")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="instead: seed N open invoices and print a cProfile of one plan, with its SQL time by statement",
    )
    parser.add_argument("--child", choices=["measure", "deliver", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", type=date.fromisoformat, help=argparse.SUPPRESS)
    return parser.parse_args()


def django_setup(url: str, *, migrate: bool) -> None:
    benchdb.django_setup(url, SCRIPT)
    from django.conf import settings

    if settings.DEBUG:
        sys.exit("Run with DEBUG off: with DEBUG on Django keeps every SQL string, which would be measured too.")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    if migrate:
        benchdb.migrate()


# ---------------------------------------------------------------------------------------------------------------
# seeding (parent process)


def seed(*, invoices: int, as_of: date) -> int:
    """N open invoices over N/2 patients (two each), every patient due on `as_of`. Returns the patient count."""
    from django.conf import settings

    patients = invoices // 2
    tz = settings.TIME_ZONE
    conn = benchdb.raw_connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "TRUNCATE invoices_reminderlog, invoices_reminderrun, invoices_invoice, invoices_therapysession, "
                "invoices_patient, invoices_provider, invoices_practice, auth_user RESTART IDENTITY CASCADE"
            )
            cur.execute(
                "INSERT INTO invoices_practice (name, autopay_policy) VALUES ('Bench practice', 'off') RETURNING id"
            )
            (practice_id,) = cur.fetchone()
            cur.execute(
                "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
                "is_active, date_joined) SELECT '!', false, 'bench-provider-' || g, '', '', '', true, true, now() "
                "FROM generate_series(1, %s) g",
                [PROVIDERS],
            )
            cur.execute(
                "INSERT INTO invoices_provider (display_name, npi, practice_id, user_id) "
                "SELECT 'Provider ' || u.id, (1000000000 + u.id)::text, %s, u.id FROM auth_user u",
                [practice_id],
            )
            cur.execute(
                "INSERT INTO invoices_patient (first_name, last_name, email, phone, stripe_customer_id, created_at, "
                "preferred_language) "
                "SELECT 'Pat' || g, 'Bench', CASE WHEN g %% %(every)s = 0 THEN '' "
                "ELSE 'patient-' || g || '@example.test' END, '+1202555' || lpad((g %% 10000)::text, 4, '0'), '', "
                "now(), 'en' FROM generate_series(1, %(n)s) g",
                {"n": patients, "every": NO_EMAIL_EVERY},
            )
            # Two sessions per patient; the second is issued three AGES slots after the first (always different).
            cur.execute(
                "INSERT INTO invoices_therapysession (date_of_service, cpt_code, billing_type, allowed_amount_cents, "
                "status, completed_at, billing_outcome, billing_note, created_at, patient_id, provider_id) "
                "SELECT %(as_of)s::date - (%(ages)s::int[])[1 + (p.id + 3 * k) %% %(n_ages)s], '90837', 'insurance', "
                "15000, 'completed', now(), 'invoiced', '', now(), p.id, "
                "(SELECT min(id) FROM invoices_provider) + (p.id + k) %% %(providers)s "
                "FROM invoices_patient p CROSS JOIN generate_series(0, 1) k ORDER BY p.id, k",
                {"as_of": as_of, "ages": list(AGES), "n_ages": len(AGES), "providers": PROVIDERS},
            )
            # Issued at 10:00 local time on the day of service; amounts 25.00 to 55.00 (all > 0).
            cur.execute(
                "INSERT INTO invoices_invoice (number, kind, amount_cents, status, deductible_applied_cents, "
                "calculation, issued_at, email_problem, void_reason, patient_id, practice_id, provider_id, "
                "session_id, outside_payment_note) "
                "SELECT 'RB-' || lpad(s.id::text, 9, '0'), 'insurance', 2500 + (s.id %% 7) * 500, 'open', 0, '{}', "
                "(s.date_of_service + time '10:00') AT TIME ZONE %(tz)s, '', '', s.patient_id, %(practice)s, "
                "s.provider_id, s.id, '' FROM invoices_therapysession s ORDER BY s.id",
                {"tz": tz, "practice": practice_id},
            )
            # History: patients whose newest invoice is at least a week old had a reminder four days ago (every
            # 20th of those failed, which the schedule ignores). It is older than today's point, so all stay due.
            cur.execute(
                "INSERT INTO invoices_reminderlog (sent_on, status, invoice_ids, total_cents, reason, created_at, "
                "sent_at, patient_id) "
                "SELECT %(as_of)s::date - 4, CASE WHEN s.patient_id %% 20 = 0 THEN 'failed' ELSE 'sent' END, "
                # sent on that day, not today: a reminder sent today would supersede today's (at most one a day)
                "'[]', 0, '', now(), ((%(as_of)s::date - 4) + time '10:00') AT TIME ZONE %(tz)s, s.patient_id "
                "FROM invoices_therapysession s "
                "GROUP BY s.patient_id HAVING max(s.date_of_service) <= %(as_of)s::date - 7",
                {"as_of": as_of, "tz": tz},
            )
            cur.execute("VACUUM ANALYZE")
            cur.execute("SELECT count(*) FROM invoices_invoice WHERE status = 'open'")
            (count,) = cur.fetchone()
            if count != invoices:
                sys.exit(f"seeding FAILED: {count} open invoices, expected {invoices}")
    finally:
        conn.close()
    return patients


# ---------------------------------------------------------------------------------------------------------------
# the raw-SQL floor (child process)

FLOOR_SELECT = """
WITH open_invoices AS (
    SELECT i.patient_id, (i.issued_at AT TIME ZONE %(tz)s)::date AS issued_on,
           %(as_of)s::date - (i.issued_at AT TIME ZONE %(tz)s)::date AS age
    FROM invoices_invoice i
    WHERE i.status = 'open'
), points AS (
    SELECT patient_id,
           max(issued_on + CASE
               WHEN age > %(last)s AND %(repeat)s > 0 THEN %(last)s + (age - %(last)s) / %(repeat)s * %(repeat)s
               ELSE (SELECT max(d) FROM unnest(%(schedule)s::int[]) d WHERE d <= age)
           END) AS point
    FROM open_invoices
    WHERE age >= %(first)s
    GROUP BY patient_id
)
SELECT p.patient_id FROM points p
WHERE p.point > COALESCE(
    (SELECT max(r.sent_on) FROM invoices_reminderlog r WHERE r.patient_id = p.patient_id AND r.status <> 'failed'),
    '-infinity'::date
)
ORDER BY p.patient_id
"""

FLOOR_INSERT = """
INSERT INTO invoices_reminderlog (patient_id, sent_on, run_id, status, reason, invoice_ids, total_cents, created_at)
SELECT i.patient_id, %(as_of)s, %(run)s,
       CASE WHEN p.email = '' THEN 'skipped' ELSE 'pending' END,
       CASE WHEN p.email = '' THEN 'No email address on file.' ELSE '' END,
       jsonb_agg(i.id ORDER BY i.id), sum(i.amount_cents), now()
FROM invoices_invoice i JOIN invoices_patient p ON p.id = i.patient_id
WHERE i.patient_id = ANY(%(due)s) AND i.status = 'open'
GROUP BY i.patient_id, p.email
ON CONFLICT DO NOTHING
"""


def floor_params(as_of: date) -> dict[str, Any]:
    from django.conf import settings

    schedule = sorted(settings.REMINDER_SCHEDULE_DAYS)
    return {
        "tz": settings.TIME_ZONE,
        "as_of": as_of,
        "schedule": schedule,
        "first": schedule[0],
        "last": schedule[-1],
        "repeat": settings.REMINDER_REPEAT_DAYS,
    }


def floor_due_count(conn: psycopg2.extensions.connection, as_of: date) -> int:
    """How many patients the floor's selection finds (counted server-side: no Python objects per patient)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({FLOOR_SELECT}) due", floor_params(as_of))
        (count,) = cur.fetchone()
    conn.commit()
    return count


def time_floor(conn: psycopg2.extensions.connection, *, as_of: date, run_id: int) -> tuple[float, int]:
    """Select the due patients, insert their log rows, commit. Returns (seconds, rows inserted)."""
    params = floor_params(as_of)
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(FLOOR_SELECT, params)
        due = [row[0] for row in cur.fetchall()]
        cur.execute(FLOOR_INSERT, {"as_of": as_of, "run": run_id, "due": due})
        inserted = cur.rowcount
    conn.commit()
    return time.perf_counter() - started, inserted


# ---------------------------------------------------------------------------------------------------------------
# measuring (child process: one per size, so memory never mixes)


def vm_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def clear_today(as_of: date) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM invoices_reminderlog WHERE sent_on = %s", [as_of])
        cur.execute("VACUUM ANALYZE invoices_reminderlog")


def today_rows(as_of: date) -> list[tuple[Any, ...]]:
    """Today's log rows as the plan and the floor must both write them (json text sorts the same both ways)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT patient_id, status, reason, invoice_ids::text, total_cents FROM invoices_reminderlog "
            "WHERE sent_on = %s ORDER BY patient_id",
            [as_of],
        )
        return cur.fetchall()


def new_run(as_of: date) -> Any:
    from invoices.models import ReminderRun

    return ReminderRun.objects.create(as_of=as_of, triggered_by="bench")


def logs_of(run: Any) -> int:
    from invoices.models import ReminderLog

    return ReminderLog.objects.filter(run=run).count()


def measure(*, invoices: int, as_of: date, repeats: int) -> Measure:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from invoices.reminders import reminders_plan

    patients = invoices // 2
    checks: list[str] = []
    problems: list[str] = []
    conn = benchdb.raw_connection()
    try:
        due = floor_due_count(conn, as_of)  # untimed: warms the server's caches for both sides alike
        if due != patients:
            problems.append(f"the floor's selection finds {due} due patients, expected {patients}")
        new_run(as_of)  # first ORM query: connection set up outside the measured run
        clear_today(as_of)

        # 1. First plan run in this process: RSS growth (VmHWM reset just before), plus correctness.
        can_reset = reset_peak_rss()
        rss_before = vm_kb("VmRSS") if can_reset else vm_kb("VmHWM")
        run = new_run(as_of)
        result = reminders_plan(run=run)
        plan_peak_rss_mb = vm_kb("VmHWM") / 1024
        rss_growth_mb = max(0, vm_kb("VmHWM") - rss_before) / 1024
        inserted = logs_of(run)
        if inserted != patients or result.due != patients:
            problems.append(f"plan inserted {inserted} rows (result.due {result.due}), expected {patients}")
        no_email = len(result.no_email)
        if no_email != patients // NO_EMAIL_EVERY or result.planned != patients - no_email:
            problems.append(f"plan: {result.planned} pending and {no_email} skipped (no email)")
        plan_rows = today_rows(as_of)
        checks.append(f"plan inserted {inserted} rows = {patients} due patients ({no_email} skipped: no email)")
        again = new_run(as_of)
        second = reminders_plan(run=again)
        if logs_of(again) or second.due or len(today_rows(as_of)) != patients:
            problems.append(f"a second plan on the same day inserted {logs_of(again)} rows (due {second.due})")
        checks.append("a second plan on the same day inserted 0 rows")

        # 2. tracemalloc peak of a plan run (separate: tracing slows every allocation down).
        clear_today(as_of)
        run = new_run(as_of)
        tracemalloc.start()
        tracemalloc.reset_peak()
        reminders_plan(run=run)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        # 3. Timed runs, plan and floor alternated.
        plan_runs: list[float] = []
        floor_runs: list[float] = []
        for _ in range(repeats):
            clear_today(as_of)
            floor_run = new_run(as_of)
            seconds, rows = time_floor(conn, as_of=as_of, run_id=floor_run.pk)
            floor_runs.append(seconds)
            if rows != patients:
                problems.append(f"the floor inserted {rows} rows, expected {patients}")
            if today_rows(as_of) != plan_rows:
                problems.append("the floor's rows differ from the plan's (patient, status, reason, invoices, total)")
            clear_today(as_of)
            run = new_run(as_of)
            started = time.perf_counter()
            reminders_plan(run=run)
            plan_runs.append(time.perf_counter() - started)
            if logs_of(run) != patients:
                problems.append(f"timed plan inserted {logs_of(run)} rows, expected {patients}")
        checks.append("the floor writes exactly the plan's rows (patient, status, reason, invoice ids, total)")

        # 4. SQL statements per plan (untimed; CaptureQueriesContext keeps every statement).
        clear_today(as_of)
        run = new_run(as_of)
        with CaptureQueriesContext(connection) as captured:
            reminders_plan(run=run)
        plan_queries = len(captured.captured_queries)
    finally:
        conn.close()
    if problems:
        sys.exit(f"verification FAILED at N={invoices}: " + "; ".join(problems))
    return Measure(
        invoices=invoices,
        patients=patients,
        due=due,
        chunk_size=settings.REMINDER_CHUNK_SIZE,
        plan_s=statistics.median(plan_runs),
        plan_runs=plan_runs,
        floor_s=statistics.median(floor_runs),
        floor_runs=floor_runs,
        rss_growth_mb=rss_growth_mb,
        plan_peak_rss_mb=plan_peak_rss_mb,
        tracemalloc_peak_mb=peak / 2**20,
        plan_queries=plan_queries,
        checks=checks,
    )


def deliver(*, invoices: int, as_of: date) -> dict[str, Any]:
    """The full reminders_run (plan + one email per log) with the locmem backend."""
    from django.core import mail

    from invoices.models import ReminderLog
    from invoices.reminders import reminders_run

    patients = invoices // 2
    expected = patients - patients // NO_EMAIL_EVERY
    clear_today(as_of)
    mail.outbox = []
    marks: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks[phase] = time.perf_counter()

    started = time.perf_counter()
    summary = reminders_run(as_of=as_of, triggered_by="bench", progress=progress)
    finished = time.perf_counter()
    plan_end = marks.get("plan", started)
    sent = ReminderLog.objects.filter(sent_on=as_of, status=ReminderLog.Status.SENT).count()
    problems = []
    if summary.reminded != expected or sent != expected or len(mail.outbox) != expected:
        problems.append(f"reminded {summary.reminded}, {sent} rows sent, {len(mail.outbox)} emails; want {expected}")
    if summary.failures:
        problems.append(f"{summary.failures} failures")
    if len({m.to[0] for m in mail.outbox}) != len(mail.outbox):
        problems.append("a patient got two emails")
    if problems:
        sys.exit(f"delivery verification FAILED at N={invoices}: " + "; ".join(problems))
    return {
        "invoices": invoices,
        "emails": len(mail.outbox),
        "total_s": finished - started,
        "plan_s": plan_end - started,
        "send_s": finished - plan_end,
    }


def profile_plan(*, invoices: int, as_of: date) -> None:
    """One plan under cProfile (after an untimed one warms the caches), and where its SQL time went."""
    import cProfile
    from collections import defaultdict
    from collections.abc import Callable

    from django.db import connection

    from invoices.reminders import reminders_plan

    clear_today(as_of)
    reminders_plan(run=new_run(as_of))
    clear_today(as_of)
    sql_s: dict[str, float] = defaultdict(float)
    sql_n: dict[str, int] = defaultdict(int)

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split())[:90]
            sql_s[key] += time.perf_counter() - started
            sql_n[key] += 1

    run = new_run(as_of)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        profiler.enable()
        reminders_plan(run=run)
        profiler.disable()
    elapsed = time.perf_counter() - started
    benchdb.print_profile(profiler, f"reminders_plan at {invoices:,} open invoices: {elapsed:.2f} s under cProfile")
    print(f"SQL time by statement ({sum(sql_s.values()):.2f} s of {elapsed:.2f} s):")
    for key, seconds in sorted(sql_s.items(), key=lambda item: -item[1])[:8]:
        print(f"  {seconds:7.2f} s  {sql_n[key]:>5}x  {key}")


def child_main(args: argparse.Namespace) -> None:
    django_setup(benchdb.bench_database_url(SCRIPT, BENCH_DB), migrate=False)
    if args.child == "profile":
        profile_plan(invoices=args.size, as_of=args.as_of)
        return
    if args.child == "measure":
        payload: Any = measure(invoices=args.size, as_of=args.as_of, repeats=args.repeats).__dict__
    else:
        payload = deliver(invoices=args.size, as_of=args.as_of)
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def spawn(mode: str, *, size: int, as_of: date, repeats: int) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--child", mode, "--size", str(size), "--as-of", as_of.isoformat()]
    cmd += ["--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
    lines = proc.stdout.splitlines()
    for line in lines:
        if not line.startswith(RESULT_PREFIX):
            print(f"  | {line}")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(f"the {mode} subprocess for N={size} failed (exit {proc.returncode})")
    if mode == "profile":
        return None
    return json.loads(next(line for line in lines if line.startswith(RESULT_PREFIX))[len(RESULT_PREFIX) :])


# ---------------------------------------------------------------------------------------------------------------
# report (parent process)


def is_flat(small: float, large: float) -> bool:
    return large <= max(small * FLAT_TOLERANCE, small + FLAT_SLACK_MB)


def print_report(results: list[Measure], delivery: dict[str, Any] | None, repeats: int) -> bool:
    header = (
        f"{'invoices':>8} | {'patients':>8} | {'plan s':>7} | {'floor s':>7} | {'plan/floor':>10} | "
        f"{'tracemalloc MB':>14} | {'RSS growth MB':>13} | {'peak RSS MB':>11} | {'SQL/plan':>8}"
    )
    print()
    print(f"reminders_plan vs raw-SQL floor (median of {repeats}; chunk size {results[0].chunk_size})")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.invoices:>8,} | {r.patients:>8,} | {r.plan_s:>7.3f} | {r.floor_s:>7.3f} | "
            f"{r.plan_s / r.floor_s:>10.2f} | {r.tracemalloc_peak_mb:>14.1f} | {r.rss_growth_mb:>13.1f} | "
            f"{r.plan_peak_rss_mb:>11.1f} | {r.plan_queries:>8}"
        )
    for r in results:
        runs = ", ".join(f"{p:.3f}/{f:.3f}" for p, f in zip(r.plan_runs, r.floor_runs, strict=True))
        print(f"  N={r.invoices:,} runs plan/floor s: {runs}; " + "; ".join(r.checks))
    verdicts: list[tuple[str, bool]] = []
    for r in results:
        verdicts.append((f"plan/floor ≤ {RATIO_TARGET:g} at {r.invoices:,}", r.plan_s / r.floor_s <= RATIO_TARGET))
        verdicts.append(
            (f"peak RSS ≤ {MEMORY_TARGET_MB:g} MB at {r.invoices:,}", r.plan_peak_rss_mb <= MEMORY_TARGET_MB)
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        span = f"{small.invoices:,} → {large.invoices:,}"
        verdicts.append(
            (f"tracemalloc peak flat {span}", is_flat(small.tracemalloc_peak_mb, large.tracemalloc_peak_mb))
        )
        verdicts.append((f"RSS growth flat {span}", is_flat(small.rss_growth_mb, large.rss_growth_mb)))
    if delivery:
        print(
            f"\nreminders_run at {delivery['invoices']:,} invoices (locmem email): {delivery['emails']:,} emails in "
            f"{delivery['total_s']:.2f} s (plan {delivery['plan_s']:.2f} s, delivery {delivery['send_s']:.2f} s = "
            f"{delivery['emails'] / delivery['send_s']:,.0f} emails/s)"
        )
    print()
    for label, ok in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    print(f"  (flat: the larger size within {FLAT_TOLERANCE:g}× or +{FLAT_SLACK_MB:g} MB of the smaller)")
    return all(ok for _, ok in verdicts)


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    url = benchdb.bench_database_url(SCRIPT, BENCH_DB)
    benchdb.drop_database(url, BENCH_DB, recreate=True)
    passed = False
    try:
        django_setup(url, migrate=True)
        from django.db import connections
        from django.utils import timezone

        as_of = timezone.localdate()
        if args.profile:
            print(f"N={args.profile:,}: seeding", flush=True)
            seed(invoices=args.profile, as_of=as_of)
            connections.close_all()
            spawn("profile", size=args.profile, as_of=as_of, repeats=1)
            passed = True
            return
        results: list[Measure] = []
        delivery = None
        for n in args.sizes:
            print(f"N={n:,}: seeding", flush=True)
            seed(invoices=n, as_of=as_of)
            connections.close_all()
            print(f"N={n:,}: measuring in a fresh subprocess", flush=True)
            results.append(Measure(**(spawn("measure", size=n, as_of=as_of, repeats=args.repeats) or {})))
        if not args.no_deliver:
            n = args.deliver_size
            print(f"N={n:,}: seeding for reminders_run with delivery", flush=True)
            seed(invoices=n, as_of=as_of)
            connections.close_all()
            delivery = spawn("deliver", size=n, as_of=as_of, repeats=1)
        passed = print_report(results, delivery, args.repeats)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            benchdb.drop_database(url, BENCH_DB)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
