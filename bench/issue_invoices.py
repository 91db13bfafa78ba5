"""Benchmark: invoice issuance (what invoice_issue_task runs: bill, then announce in the same commit) in sessions/s
against raw INSERT baselines, side by side."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import benchdb
import psycopg2.extras

SCRIPT = "issue_invoices.py"
BENCH_DB = "alma_bench"
PROBE_ISSUANCES = 8  # issuances whose SQL is captured and counted (outside the timed runs)
ALLOWED_CENTS = 15_000
SESSIONS_PER_PATIENT = (1, 2, 3, 5)  # cycled, so some patients have several sessions on one eligibility check

# Columns every raw baseline row fills (Django sets defaults in Python, not in the database).
INVOICE_COLUMNS = (
    "number, session_id, patient_id, provider_id, practice_id, kind, amount_cents, status, eligibility_snapshot_id, "
    "deductible_applied_cents, calculation, issued_at, emailed_at, email_problem, paid_at, voided_at, void_reason, "
    "outside_payment_note"
)


@dataclass(frozen=True)
class Result:
    size: int
    service_per_s: float
    bulk_per_s: float
    per_row_per_s: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000], help="sessions per run")
    parser.add_argument("--keep-db", action="store_true", help=f"leave the {BENCH_DB} database behind")
    parser.add_argument("--profile", type=int, metavar="N", default=0, help="instead: profile N issuances (cProfile)")
    return parser.parse_args()


def django_setup(url: str) -> None:
    benchdb.django_setup(url, SCRIPT)
    from django.conf import settings

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    from alma_billing.celery_app import app

    if not app.conf.task_always_eager:
        sys.exit("Celery must run eagerly for this benchmark (CELERY_TASK_ALWAYS_EAGER=1, the settings_test default).")
    benchdb.migrate()


def reset_data() -> None:
    """Empty every table the runs write, so each size starts from the same empty database."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from alma_billing.core.models import AuditEvent
    from invoices.models import Coverage, EligibilitySnapshot, Invoice, Patient, Practice, Provider, TherapySession
    from verification.models import PayLink

    models = [AuditEvent, PayLink, Invoice, TherapySession, EligibilitySnapshot, Coverage, Patient, Provider, Practice]
    tables = ", ".join(m._meta.db_table for m in [*models, get_user_model()])
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def create_sessions(*, count: int, tag: str) -> list[int]:
    """Completed insurance sessions, each patient with an active plan and one completed eligibility check."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from invoices.models import Coverage, EligibilitySnapshot, Patient, Practice, Provider, TherapySession

    now = timezone.now()
    practice, _ = Practice.objects.get_or_create(name="Bench practice")
    providers = list(Provider.objects.filter(practice=practice))
    if not providers:
        users = get_user_model().objects.bulk_create(
            get_user_model()(username=f"bench-provider-{i}", is_staff=True) for i in range(20)
        )
        providers = Provider.objects.bulk_create(
            Provider(user=u, practice=practice, display_name=f"Provider {i}", npi=f"{1_000_000_000 + i}")
            for i, u in enumerate(users)
        )

    per_patient: list[int] = []
    while (left := count - sum(per_patient)) > 0:
        per_patient.append(min(SESSIONS_PER_PATIENT[len(per_patient) % len(SESSIONS_PER_PATIENT)], left))
    patients = Patient.objects.bulk_create(
        Patient(
            first_name=f"Pat{tag}{i}",
            last_name="Bench",
            email=f"patient-{tag}-{i}@example.test",
            phone=f"+1202555{i % 10_000:04d}",
        )
        for i in range(len(per_patient))
    )
    coverages = Coverage.objects.bulk_create(
        Coverage(patient=p, payer_name="Bench Health", plan_name="PPO", member_id=f"M{tag}{p.pk}") for p in patients
    )
    # Half the plans charge a copay; half a deductible then 20% coinsurance (exercises the earlier-invoice sums).
    snapshots = EligibilitySnapshot.objects.bulk_create(
        EligibilitySnapshot(
            coverage=c,
            checked_at=now - timedelta(days=400),
            status=EligibilitySnapshot.Status.COMPLETED,
            copay_cents=2_500 if i % 2 == 0 else None,
            coinsurance_bp=None if i % 2 == 0 else 2_000,
            deductible_remaining_cents=0 if i % 2 == 0 else 20_000,
            oop_max_remaining_cents=None if i % 2 == 0 else 500_000,
            raw_payload={"source": "bench"},
        )
        for i, c in enumerate(coverages)
    )
    del snapshots
    sessions = [
        TherapySession(
            patient=patient,
            provider=providers[(i + k) % len(providers)],
            date_of_service=(now - timedelta(days=300 - k)).date(),
            cpt_code="90837",
            billing_type=TherapySession.BillingType.INSURANCE,
            allowed_amount_cents=ALLOWED_CENTS,
            status=TherapySession.Status.COMPLETED,
            completed_at=now,
        )
        for i, (patient, n) in enumerate(zip(patients, per_patient, strict=True))
        for k in range(n)
    ]
    created = TherapySession.objects.bulk_create(sessions, batch_size=2_000)
    return [s.pk for s in created]


def time_service(session_ids: list[int]) -> float:
    """Issue every session's invoice through the real service; returns sessions per second."""
    from invoices.services import invoice_issue

    started = time.perf_counter()
    for session_id in session_ids:
        invoice_issue(session_id=session_id, announce=True)  # what invoice_issue_task runs
    return len(session_ids) / (time.perf_counter() - started)


def verify(session_ids: list[int]) -> None:
    from django.core import mail
    from django.db.models import Count

    from invoices.models import Invoice, TherapySession

    n = len(session_ids)
    invoices = Invoice.objects.filter(session_id__in=session_ids)
    problems = []
    if (total := Invoice.objects.count()) != n:
        problems.append(f"{total} invoices, expected {n}")
    if (sessions := invoices.values("session_id").distinct().count()) != n:
        problems.append(f"{sessions} sessions invoiced, expected {n}")
    if (emailed := invoices.filter(emailed_at__isnull=False).count()) != n:
        problems.append(f"{emailed} invoices marked emailed, expected {n}")
    if len(mail.outbox) != n:
        problems.append(f"{len(mail.outbox)} emails in the outbox, expected {n}")
    urls = Counter(m.body for m in mail.outbox)
    if dupes := sum(c - 1 for c in urls.values() if c > 1):
        problems.append(f"{dupes} duplicate email bodies")
    if Invoice.objects.values("number").annotate(c=Count("id")).filter(c__gt=1).exists():
        problems.append("duplicate invoice numbers")
    if invoices.filter(number__startswith="pending-").exists():
        problems.append("invoices left with a pending number")
    left = TherapySession.objects.filter(pk__in=session_ids).exclude(billing_outcome=TherapySession.Outcome.INVOICED)
    if left.exists():
        problems.append(f"{left.count()} sessions not marked invoiced")
    if problems:
        sys.exit(f"verification FAILED at N={n}: " + "; ".join(problems))
    print(f"  verified N={n}: {n} invoices, {n} emails, no duplicates", flush=True)


def baseline_rows(session_ids: list[int], *, prefix: str) -> list[tuple[Any, ...]]:
    """One invoice-shaped row per session, with the values and the calculation JSON the service would store."""
    from django.utils import timezone

    from invoices.models import TherapySession

    now = timezone.now()
    sessions = (
        TherapySession.objects.filter(pk__in=session_ids)
        .order_by("pk")
        .values_list(
            "pk",
            "patient_id",
            "provider_id",
            "provider__practice_id",
            "patient__coverages__eligibility_checks",
        )
    )
    calculation = json.dumps(
        {
            "method": "insurance",
            "snapshot_id": 0,
            "checked_on": "January 1, 2025",
            "copay_cents": 2500,
            "coinsurance_bp": None,
            "deductible_checked": True,
            "deductible_remaining_cents": 0,
            "deductible_used_by_earlier_cents": 0,
            "oop_max_remaining_cents": None,
            "allowed_cents": ALLOWED_CENTS,
            "deductible_cents": 0,
            "cost_share_kind": "copay",
            "cost_share_cents": 2500,
            "capped_by_oop": False,
            "amount_cents": 2500,
        }
    )
    return [
        (
            f"{prefix}{sid:07d}",
            sid,
            patient,
            provider,
            practice,
            "insurance",
            2_500,
            "open",
            snapshot,
            0,
            calculation,
            now,
            None,
            "",
            None,
            None,
            "",
            "",  # outside_payment_note
        )
        for sid, patient, provider, practice, snapshot in sessions
    ]


def time_bulk_insert(rows: list[tuple[Any, ...]]) -> float:
    """Baseline: execute_values of every row into invoices_invoice (its constraints and indexes), one commit."""
    conn = benchdb.raw_connection()
    try:
        started = time.perf_counter()
        with conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur, f"INSERT INTO invoices_invoice ({INVOICE_COLUMNS}) VALUES %s", rows, page_size=1_000
            )
        conn.commit()
        return len(rows) / (time.perf_counter() - started)
    finally:
        conn.close()


def time_per_row_commit(rows: list[tuple[Any, ...]]) -> float:
    """Floor for a service that commits per invoice: one INSERT and one COMMIT per row."""
    conn = benchdb.raw_connection()
    placeholders = ", ".join(["%s"] * len(rows[0]))
    sql = f"INSERT INTO invoices_invoice ({INVOICE_COLUMNS}) VALUES ({placeholders})"
    try:
        started = time.perf_counter()
        for row in rows:
            with conn.cursor() as cur:
                cur.execute(sql, row)
            conn.commit()
        return len(rows) / (time.perf_counter() - started)
    finally:
        conn.close()


def run_size(n: int) -> Result:
    from django.core import mail

    print(f"N={n}: setting up", flush=True)
    reset_data()
    service_ids = create_sessions(count=n, tag="s")
    bulk_ids = create_sessions(count=n, tag="b")
    row_ids = create_sessions(count=n, tag="r")
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    mail.outbox = []

    print(f"N={n}: issuing through invoices.services.invoice_issue", flush=True)
    service = time_service(service_ids)
    verify(service_ids)
    print(f"N={n}: baselines", flush=True)
    bulk = time_bulk_insert(baseline_rows(bulk_ids, prefix="BULK-"))
    per_row = time_per_row_commit(baseline_rows(row_ids, prefix="ROW-"))
    mail.outbox = []
    return Result(size=n, service_per_s=service, bulk_per_s=bulk, per_row_per_s=per_row)


def profile_issuance(n: int) -> None:
    import cProfile

    time_service(create_sessions(count=20, tag="warm"))
    sessions = create_sessions(count=n, tag="profile")
    profiler = cProfile.Profile()
    profiler.enable()
    per_s = time_service(sessions)
    profiler.disable()
    benchdb.print_profile(profiler, f"{n} issuances (issue + announce, one task): {1000 / per_s:.2f} ms each, profiled")


def probe_queries() -> tuple[float, Counter[str], list[str]]:
    """SQL statements per issuance (issue + announce, as invoice_issue_task runs it), on a few fresh sessions."""
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from invoices.services import invoice_issue

    reset_data()
    session_ids = create_sessions(count=PROBE_ISSUANCES, tag="q")
    mail.outbox = []
    with CaptureQueriesContext(connection) as captured:
        for session_id in session_ids:
            invoice_issue(session_id=session_id, announce=True)  # what invoice_issue_task runs
    statements = [q["sql"] for q in captured.captured_queries]
    kinds = Counter(_kind(sql) for sql in statements)
    # Show one issuance's statements (the last: a patient with earlier invoices on the same check, if any).
    per_issue = len(statements) // len(session_ids)
    return len(statements) / len(session_ids), kinds, statements[-per_issue:]


def _kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper()
    if word == "SELECT" and "FOR UPDATE" in sql.upper():
        return "SELECT ... FOR UPDATE"
    return word


def print_table(results: list[Result]) -> None:
    header = f"{'N':>7} | {'service sess/s':>14} | {'bulk rows/s':>11} | {'per-row+COMMIT rows/s':>21} | "
    header += f"{'service/bulk':>12} | {'service/per-row':>15}"
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.size:>7} | {r.service_per_s:>14,.0f} | {r.bulk_per_s:>11,.0f} | {r.per_row_per_s:>21,.0f} | "
            f"{r.service_per_s / r.bulk_per_s:>12.4f} | {r.service_per_s / r.per_row_per_s:>15.3f}"
        )


def main() -> None:
    args = parse_args()
    url = benchdb.bench_database_url(SCRIPT, BENCH_DB)
    benchdb.drop_database(url, BENCH_DB, recreate=True)
    try:
        django_setup(url)
        if args.profile:
            profile_issuance(args.profile)
            return
        per_issue, kinds, sample = probe_queries()
        print(f"SQL per issuance (issue + announce), over {PROBE_ISSUANCES} issuances: {per_issue:.1f}")
        print("  by kind, per issuance: " + ", ".join(f"{k} {v / PROBE_ISSUANCES:g}" for k, v in kinds.most_common()))
        if os.environ.get("BENCH_SHOW_SQL"):
            print("\n".join(f"    {sql[:160]}" for sql in sample))
        results = [run_size(n) for n in args.sizes]
        print_table(results)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            benchdb.drop_database(url, BENCH_DB)


if __name__ == "__main__":
    main()
