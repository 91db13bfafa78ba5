"""Benchmark: the patient pay pages and the Stripe webhook under gunicorn + PostgreSQL, against baselines side by side.

Starts gunicorn (2 sync workers) on a throwaway `alma_bench_pay` database, seeds one patient with N open invoices,
verifies a browser session through the real phone + SMS code flow over HTTP, then loads each URL at 32 connections
with wrk (or, without wrk, a Python thread load generator, labeled as such) and prints requests/s, p99 and the
ratios DESIGN.md "Performance targets" asks for. Absolute numbers on a shared 2-core machine are noise; the ratios
are measured in one run on one stack. SQL statements per request are counted in-process with the Django test client
against the same database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/pay_page.py
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import benchdb
import requests

ROOT = benchdb.ROOT
VENV_BIN = Path(sys.executable).parent
SCRIPT = "pay_page.py"
BENCH_DB = "alma_bench_pay"
SETTINGS_MODULE = "bench.pay_settings"
SECRET_KEY = "bench-only-secret-key-not-a-secret-0123456789abcdef"
PHONE = "+12025550143"
WRK_THREADS = 2

# (numerator, denominator, minimum ratio) from DESIGN.md "Performance targets".
TARGETS = [
    ("summary", "bare", 0.2),
    ("summary", "reference", 1.0),
    ("landing", "bare", 0.4),
    ("webhook_fresh", "reference", 0.5),
    ("webhook_duplicate", "reference", 1.0),
]
P99_TARGET_MS = {"summary": 100.0}
PAGES = ("bare", "reference", "summary", "landing", "webhook_duplicate", "webhook_fresh")
RSS_TARGET_MB = 150.0

# wrk script: optional cookie/body from the environment, signed bodies (one per request) read from a file,
# and a machine-readable summary line at the end.
WRK_LUA = r"""
local method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
local bodies_file = os.getenv("BENCH_BODIES_FILE")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local all_threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(all_threads, thread)
end

function init(args)
  wrk.method = method
  if body_file then
    local f = assert(io.open(body_file, "rb"))
    wrk.body = f:read("*a")
    f:close()
  end
  if bodies_file then
    bodies = {}
    for line in io.lines(bodies_file) do
      local tab = line:find("\t", 1, true)
      bodies[#bodies + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
    end
    idx = tid
    wrapped = 0
  end
end

if bodies_file then
  function request()
    local item = bodies[idx]
    idx = idx + nthreads
    if idx > #bodies then
      idx = tid
      wrapped = wrapped + 1
    end
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    headers["Content-Type"] = "application/json"
    headers["Stripe-Signature"] = item[1]
    return wrk.format("POST", nil, headers, item[2])
  end
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(all_threads) do
    wraps = wraps + (tonumber(thread:get("wrapped")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, '
    .. '"socket_errors": %d, "wraps": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout, wraps))
end
"""


@dataclass
class Target:
    name: str
    label: str
    path: str
    method: str = "GET"
    cookie: str = ""
    body: bytes | None = None  # one fixed body (duplicate delivery)
    signature: str = ""
    signed_bodies: list[tuple[str, bytes]] | None = None  # one body per request (fresh events)
    expect: str = ""  # text the response must contain (checked once before the run)
    results: list[Measure] = field(default_factory=list)


@dataclass(frozen=True)
class Measure:
    rps: float
    p99_ms: float
    p50_ms: float
    requests: int
    non2xx: int
    errors: int
    wraps: int = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10, help="open invoices of the verified patient")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="measure every page this many times (median)")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    parser.add_argument("--keep-db", action="store_true", help=f"leave the {BENCH_DB} database behind")
    parser.add_argument(
        "--worker-class",
        choices=("sync", "gthread"),
        default="sync",
        help="gunicorn's worker class: sync as in production, or gthread (a prototype: threads per worker)",
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per gunicorn worker with --worker-class gthread"
    )
    parser.add_argument(
        "--pages",
        nargs="+",
        choices=PAGES,
        metavar="PAGE",
        help=f"measure only these pages (the bare view is always measured, for the ratios): {', '.join(PAGES)}",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="instead of loading: profile N in-process requests of each page (cProfile) and print the top",
    )
    return parser.parse_args()


# --- database and environment -------------------------------------------------------------------------------


def server_environment(url: str, tmp: Path) -> dict[str, str]:
    """What production would set (DEBUG off, persistent connections), with local SMS/Stripe allowed."""
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_COOKIES": "0",
        "ALLOW_FILE_EMAIL": "1",
        "VERIFY_BACKEND": "local",
        "ALLOW_LOCAL_VERIFY": "1",
        "ALLOW_LOCALSTRIPE": "1",
        # Production requires these (issue 10); the bench runs without Redis and over plain http.
        "ALLOW_EAGER_TASKS": "1",
        "SITE_URL": "http://127.0.0.1",
        "DEFAULT_FROM_EMAIL": "bench@bench.invalid",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "60",
        "OUTBOX_DIR": str(tmp / "outbox"),
        "BENCH_STATIC_ROOT": str(tmp / "static"),
    }


def django_setup(env: dict[str, str]) -> None:
    for key in ("REDIS_URL", "EMAIL_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"):
        os.environ.pop(key, None)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)


def seed(invoices: int) -> str:
    """One patient with N open invoices (each from its own provider) and one earlier succeeded payment of two
    paid invoices. The first rows created are pk 1 of each table, which the reference page reads."""
    import datetime

    from django.db import connection
    from django.utils import timezone

    from invoices.models import Invoice
    from payments.models import Payment, PaymentAllocation
    from tests.factories import InvoiceFactory, PatientFactory
    from verification.services import pay_link_create

    patient = PatientFactory(phone=PHONE)
    today = timezone.localdate()

    def invoice(days_ago: int, amount: int, status: str = Invoice.Status.OPEN) -> Invoice:
        return InvoiceFactory(
            session__patient=patient,
            session__date_of_service=today - datetime.timedelta(days=days_ago),
            amount_cents=amount,
            status=status,
        )

    open_invoices = [invoice(10 * (invoices - n), 10_000 + 100 * n) for n in range(invoices)]
    paid = [invoice(400 + n, 9_000, Invoice.Status.PAID) for n in range(2)]
    payment = Payment.objects.create(
        patient=patient,
        amount_cents=sum(i.amount_cents for i in paid),
        status=Payment.Status.SUCCEEDED,
        attempt_key="bench-paid",
        stripe_payment_intent_id="pi_bench_paid",
        card_brand="visa",
        card_last4="4242",
        succeeded_at=timezone.now(),
    )
    for i in paid:
        PaymentAllocation.objects.create(payment=payment, invoice=i, amount_cents=i.amount_cents, state="settled")
    _, token = pay_link_create(patient=patient, invoice=open_invoices[-1])
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    connection.close()
    return token


# --- gunicorn -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(
    env: dict[str, str], port: int, log: Path, *, worker_class: str = "sync", threads: int = 1
) -> subprocess.Popen[bytes]:
    command = [
        str(VENV_BIN / "gunicorn"),
        "alma_billing.wsgi:application",
        "--workers=2",
        f"--worker-class={worker_class}",
        *([f"--threads={threads}"] if worker_class == "gthread" else []),
        "--no-control-socket",
        f"--bind=127.0.0.1:{port}",
        f"--pythonpath={ROOT}",
        "--log-level=warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/bench/bare/", timeout=2).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_gunicorn(process)
    sys.exit(f"gunicorn did not answer within 30 s:\n{log.read_text()[-3000:]}")


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_rss_mb(master_pid: int) -> dict[int, float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    rss = {}
    for pid in map(int, children):
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            rss[pid] = int(match.group(1)) / 1024
    return rss


# --- the patient's verification, over HTTP -------------------------------------------------------------------


def _csrf_field(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not match:
        raise RuntimeError("no CSRF token in the form")
    return match.group(1)


def verified_cookie(base: str, token: str, outbox: Path) -> str:
    """Phone + texted code through the running server, as a browser would: returns the Cookie header."""
    browser = requests.Session()
    landing = browser.get(f"{base}/pay/{token}/", timeout=10)
    landing.raise_for_status()
    response = browser.post(
        f"{base}/pay/{token}/",
        data={"phone": "(202) 555-0143", "csrfmiddlewaretoken": _csrf_field(landing.text)},
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code != 302:
        raise RuntimeError(f"phone step answered {response.status_code}: {response.text[:500]}")
    code_page = browser.get(f"{base}/pay/code/", timeout=10)
    texts = sorted(outbox.glob("*.sms.json"))
    if not texts:
        raise RuntimeError(f"no SMS in {outbox}")
    code = re.search(r"\b(\d{6})\b", json.loads(texts[-1].read_text())["body"])
    if not code:
        raise RuntimeError("no code in the SMS")
    response = browser.post(
        f"{base}/pay/code/",
        data={"code": code.group(1), "csrfmiddlewaretoken": _csrf_field(code_page.text)},
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code != 302 or response.headers.get("Location") != "/pay/invoices/":
        raise RuntimeError(f"code step answered {response.status_code}: {response.text[:500]}")
    cookies = browser.cookies.get_dict()
    return f"sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}"


# --- webhook events --------------------------------------------------------------------------------------------


def webhook_secret() -> str:
    from django.conf import settings

    return str(settings.STRIPE_WEBHOOK_SECRET)


def signed_event(secret: str, event_id: str, intent_id: str) -> tuple[str, bytes]:
    """A `payment_intent.processing` event for a PaymentIntent that is not ours, signed as Stripe signs."""
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.processing",
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2024-06-20",
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "status": "processing",
                    "amount": 12_000,
                    "currency": "usd",
                    "metadata": {},
                }
            },
        },
        separators=(",", ":"),
    ).encode()
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}", body


def fresh_events(secret: str, count: int, tag: str) -> list[tuple[str, bytes]]:
    return [signed_event(secret, f"evt_bench_{tag}_{n}", f"pi_bench_unknown_{tag}_{n}") for n in range(count)]


# --- SQL per request, in-process ---------------------------------------------------------------------------------


def in_process_ms(target: Target, count: int = 200) -> float:
    """Mean milliseconds per request through Django alone (test client, no HTTP, no gunicorn), after a warm-up."""
    from django.db import connection
    from django.test import Client

    client = Client(SERVER_NAME="127.0.0.1")
    headers = {"cookie": target.cookie} if target.cookie else {}
    secret = webhook_secret()
    bodies = [
        signed_event(secret, f"evt_bench_inproc_{time.time_ns()}_{n}", f"pi_bench_inproc_{n}")
        for n in range(count + 20)
    ]
    elapsed = 0.0
    for n in range(count + 20):
        extra = dict(headers)
        body = target.body
        if target.signed_bodies is not None:
            extra["stripe-signature"], body = bodies[n]
        elif target.signature:
            extra["stripe-signature"] = target.signature
        started = time.perf_counter()
        if target.method == "POST":
            client.post(target.path, data=body, content_type="application/json", headers=extra)
        else:
            client.get(target.path, headers=extra)
        if n >= 20:
            elapsed += time.perf_counter() - started
    connection.close()
    return elapsed / count * 1000


def profile_page(target: Target, count: int) -> None:
    """The top of a cProfile of `count` in-process requests (after the warm-up in_process_ms does): own time first,
    then the project's functions by cumulative time, so docs/performance.md can show where a request's time goes."""
    import cProfile

    in_process_ms(target, count=20)  # warm caches, templates and the connection outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    mean_ms = in_process_ms(target, count=count)
    profiler.disable()
    if os.environ.get("BENCH_PROFILE_CALLERS"):  # who calls a function, e.g. BENCH_PROFILE_CALLERS=dir
        import pstats

        pstats.Stats(profiler).print_callers(os.environ["BENCH_PROFILE_CALLERS"])
    benchdb.print_profile(profiler, f"{target.label}: {mean_ms:.2f} ms per request under cProfile ({count} requests)")


def queries_per_request(target: Target) -> tuple[int, list[str]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1")
    headers: dict[str, str] = {}
    if target.cookie:
        headers["cookie"] = target.cookie
    body = target.body
    if target.signed_bodies is not None:
        sig, body = signed_event(webhook_secret(), f"evt_bench_count_{time.time_ns()}", "pi_bench_count")
        headers["stripe-signature"] = sig
    elif target.signature:
        headers["stripe-signature"] = target.signature
    with CaptureQueriesContext(connection) as captured:
        if target.method == "POST":
            response = client.post(target.path, data=body, content_type="application/json", headers=headers)
        else:
            response = client.get(target.path, headers=headers)
    connection.close()
    if response.status_code != 200:
        raise RuntimeError(f"{target.path} answered {response.status_code} in-process")
    return len(captured), [q["sql"] for q in captured.captured_queries]


# --- load generators --------------------------------------------------------------------------------------------


def run_wrk(base: str, target: Target, seconds: int, connections: int, tmp: Path) -> Measure:
    script = tmp / "bench.lua"
    script.write_text(WRK_LUA)
    env = {**os.environ, "BENCH_METHOD": target.method, "BENCH_THREADS": str(WRK_THREADS)}
    for key in ("BENCH_BODY_FILE", "BENCH_BODIES_FILE"):
        env.pop(key, None)
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout=10s", "-s", str(script)]
    if target.cookie:
        command += ["-H", f"Cookie: {target.cookie}"]
    if target.body is not None:
        (tmp / "body.json").write_bytes(target.body)
        env["BENCH_BODY_FILE"] = str(tmp / "body.json")
        command += ["-H", "Content-Type: application/json", "-H", f"Stripe-Signature: {target.signature}"]
    if target.signed_bodies is not None:
        lines = b"".join(sig.encode() + b"\t" + body + b"\n" for sig, body in target.signed_bodies)
        (tmp / "bodies.tsv").write_bytes(lines)
        env["BENCH_BODIES_FILE"] = str(tmp / "bodies.tsv")
    command.append(base + target.path)
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^BENCH_JSON (.*)$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    data = json.loads(match.group(1))
    return Measure(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p99_ms=data["p99_us"] / 1000,
        p50_ms=data["p50_us"] / 1000,
        requests=data["requests"],
        non2xx=data["non2xx"],
        errors=data["socket_errors"],
        wraps=data["wraps"],
    )


def run_python(base: str, target: Target, seconds: int, connections: int, tmp: Path) -> Measure:
    """Threads, one new connection per request (gunicorn's sync workers close each connection anyway)."""
    host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 80
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    counts = {"non2xx": 0, "errors": 0, "next": 0}
    lock = threading.Lock()

    def one_body() -> tuple[str, bytes | None]:
        if target.signed_bodies is not None:
            with lock:
                n = counts["next"]
                counts["next"] += 1
            return target.signed_bodies[n % len(target.signed_bodies)]
        return target.signature, target.body

    def worker() -> None:
        mine: list[float] = []
        while time.monotonic() < deadline:
            signature, body = one_body()
            headers = {"Cookie": target.cookie} if target.cookie else {}
            if body is not None:
                headers |= {"Content-Type": "application/json", "Stripe-Signature": signature}
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.request(target.method, target.path, body=body, headers=headers)
                status = conn.getresponse().status
                conn.close()
            except OSError:
                with lock:
                    counts["errors"] += 1
                continue
            mine.append(time.perf_counter() - started)
            if not 200 <= status < 400:
                with lock:
                    counts["non2xx"] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else None
    wraps = max(0, counts["next"] - 1) // len(target.signed_bodies) if target.signed_bodies else 0
    return Measure(
        rps=len(latencies) / elapsed,
        p99_ms=pick(0.99) if pick else float("nan"),
        p50_ms=pick(0.50) if pick else float("nan"),
        requests=len(latencies),
        non2xx=counts["non2xx"],
        errors=counts["errors"],
        wraps=wraps,
    )


# --- main --------------------------------------------------------------------------------------------------------


def check_once(base: str, target: Target) -> None:
    headers = {"Cookie": target.cookie} if target.cookie else {}
    body = target.body
    if target.signed_bodies is not None:
        sig, body = signed_event(webhook_secret(), f"evt_bench_check_{time.time_ns()}", "pi_bench_check")
        headers |= {"Content-Type": "application/json", "Stripe-Signature": sig}
    elif body is not None:
        headers |= {"Content-Type": "application/json", "Stripe-Signature": target.signature}
    response = requests.request(
        target.method, base + target.path, data=body, headers=headers, allow_redirects=False, timeout=10
    )
    if response.status_code != 200 or target.expect not in response.text:
        raise RuntimeError(f"{target.path}: {response.status_code}, {target.expect!r} not found: {response.text[:500]}")


def main() -> None:
    args = parse_args()
    url = benchdb.bench_database_url(SCRIPT, BENCH_DB, default="postgres://postgres@127.0.0.1:5432/postgres")
    use_wrk = bool(shutil.which("wrk")) and not args.python_load
    load = run_wrk if use_wrk else run_python
    generator = "wrk" if use_wrk else "Python threads (wrk not found or --python-load)"
    tmp = Path(tempfile.mkdtemp(prefix="alma-bench-pay-"))
    env = server_environment(url, tmp)
    benchdb.drop_database(url, BENCH_DB, recreate=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        django_setup(env)
        token = seed(args.invoices)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_gunicorn(env, port, tmp / "gunicorn.log", worker_class=args.worker_class, threads=args.threads)
        cookie = verified_cookie(base, token, tmp / "outbox")
        secret = webhook_secret()
        duplicate_sig, duplicate_body = signed_event(secret, "evt_bench_duplicate", "pi_bench_unknown_duplicate")
        requests.post(  # the first delivery, so every measured one is a duplicate
            f"{base}/stripe/webhook/",
            data=duplicate_body,
            headers={"Content-Type": "application/json", "Stripe-Signature": duplicate_sig},
            timeout=10,
        ).raise_for_status()
        targets = [
            Target("bare", "bare Django view", "/bench/bare/", expect="ok"),
            Target("reference", "reference: 5 pk SELECTs + 2 KB template", "/bench/reference/", cookie=cookie),
            Target(
                "summary",
                f"summary /pay/invoices/ ({args.invoices} open)",
                "/pay/invoices/",
                cookie=cookie,
                expect=f"{args.invoices} unpaid invoices" if args.invoices > 1 else "You owe",
            ),
            Target("landing", "landing /pay/<token>/", f"/pay/{token}/", expect="Confirm it"),
            Target(
                "webhook_duplicate",
                "webhook, duplicate delivery",
                "/stripe/webhook/",
                method="POST",
                body=duplicate_body,
                signature=duplicate_sig,
                expect="duplicate",
            ),
            Target("webhook_fresh", "webhook, fresh event ids", "/stripe/webhook/", method="POST", expect="ok"),
        ]
        if args.pages:
            targets = [t for t in targets if t.name == "bare" or t.name in args.pages]
        if args.profile:
            for target in targets:
                if target.name in ("bare", "summary", "landing", "reference"):
                    check_once(base, target)
                    profile_page(target, args.profile)
            return
        sql: dict[str, tuple[int, list[str]]] = {}
        cpu: dict[str, float] = {}
        for target in targets:
            if target.name == "webhook_fresh":
                target.signed_bodies = []
            check_once(base, target)
            sql[target.name] = queries_per_request(target)
            cpu[target.name] = in_process_ms(target)

        for round_number in range(args.rounds):
            for target in targets:
                if target.name == "webhook_fresh":
                    # Enough distinct events for the whole run (sized from the duplicate rate), signed just now.
                    duplicate = next((t for t in targets if t.name == "webhook_duplicate" and t.results), None)
                    dup = duplicate.results[-1].rps if duplicate else 2_000
                    count = int(dup * (args.duration + args.warmup) * 2) + 5_000
                    target.signed_bodies = fresh_events(secret, count, f"r{round_number}")
                elif args.warmup:
                    load(base, target, args.warmup, args.connections, tmp)
                target.results.append(load(base, target, args.duration, args.connections, tmp))
        rss = worker_rss_mb(process.pid)
        report(targets, sql, cpu, rss, args, generator)
    finally:
        if process is not None:
            stop_gunicorn(process)
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            benchdb.drop_database(url, BENCH_DB)
        shutil.rmtree(tmp, ignore_errors=True)


def median(target: Target) -> Measure:
    ordered = sorted(target.results, key=lambda m: m.rps)
    return ordered[len(ordered) // 2]


def report(
    targets: list[Target],
    sql: dict[str, tuple[int, list[str]]],
    cpu: dict[str, float],
    rss: dict[int, float],
    args: argparse.Namespace,
    generator: str,
) -> None:
    by_name = {t.name: median(t) for t in targets}
    workers = "sync" if args.worker_class == "sync" else f"gthread ({args.threads} threads each)"
    print(
        f"\nLoad: {generator}, {args.connections} connections, {args.duration} s per page "
        f"(+{args.warmup} s warm-up), {args.rounds} round(s), gunicorn 2 {workers} workers, CONN_MAX_AGE=60, "
        f"{args.invoices} open invoices"
    )
    print("in-proc ms: mean time per request through Django alone (test client, no HTTP), before the load runs.")
    if generator != "wrk":
        print("NOTE: measured with the Python load generator, which shares the 2 cores with gunicorn.")
    print()
    print(
        f"| {'page':<44} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'SQL/req':>7} | {'non-2xx':>7} "
        f"| {'in-proc ms':>10} |"
    )
    print(f"|{'-' * 46}|{'-' * 9}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 11}:|")
    for target in targets:
        m = by_name[target.name]
        note = f" (ids reused {m.wraps}x)" if m.wraps else ""
        label = target.label + note
        print(
            f"| {label:<44} | {m.rps:>8.0f} | {m.p50_ms:>7.1f} | {m.p99_ms:>7.1f} | "
            f"{sql[target.name][0]:>7} | {m.non2xx + m.errors:>7} | {cpu[target.name]:>10.2f} |"
        )
    if args.rounds > 1:
        for target in targets:
            print(f"  {target.name}: req/s per round {[round(m.rps) for m in target.results]}")
    print()
    print(f"| {'ratio':<36} | {'value':>6} | {'target':>7} | result |")
    print(f"|{'-' * 38}|{'-' * 7}:|{'-' * 8}:|--------|")
    verdicts: list[tuple[str, float, str, bool]] = []
    for top, bottom, minimum in TARGETS:
        if top not in by_name or bottom not in by_name:
            continue  # a page left out with --pages
        value = by_name[top].rps / by_name[bottom].rps
        clean = by_name[top].non2xx + by_name[top].errors == 0
        verdicts.append((f"{top} / {bottom}", value, f">= {minimum}", value >= minimum and clean))
    for name, limit in P99_TARGET_MS.items():
        if name not in by_name:
            continue
        verdicts.append((f"{name} p99 ms", by_name[name].p99_ms, f"<= {limit:.0f}", by_name[name].p99_ms <= limit))
    worst = max(rss.values()) if rss else float("nan")
    verdicts.append(("gunicorn worker RSS MB (max)", worst, f"< {RSS_TARGET_MB:.0f}", worst < RSS_TARGET_MB))
    for what, value, goal, ok in verdicts:
        print(f"| {what:<36} | {value:>6.2f} | {goal:>7} | {'PASS' if ok else 'MISS':<6} |")
    misses = sum(not ok for *_, ok in verdicts)
    print(f"\nWorker RSS after the run: {', '.join(f'pid {pid}: {mb:.1f} MB' for pid, mb in sorted(rss.items()))}")
    print(f"Targets missed: {misses}")
    print("\nSQL statements per request (in-process, Django test client, same database):")
    for name, (count, statements) in sql.items():
        print(f"  {name}: {count}")
        for statement in statements:
            print(f"      {statement[:150]}")
    print(f"\nrps spread (stdev/mean over rounds): {spread(targets)}")


def spread(targets: list[Target]) -> str:
    if len(targets[0].results) < 2:
        return "n/a (1 round)"
    return ", ".join(
        f"{t.name} {statistics.stdev(m.rps for m in t.results) / statistics.mean(m.rps for m in t.results):.0%}"
        for t in targets
    )


if __name__ == "__main__":
    main()
