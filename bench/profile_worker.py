"""Profile a real Celery worker process (solo pool, in the foreground, under cProfile) draining N no-op tasks, then
N completed sessions' `invoice_issue_task`, each half profiled on its own, so the time a task costs around its body
(Celery's tracer, the Django fixup, our signal handlers and logging, the broker round trip) can be told from the
body itself (bench/issue_worker.py measures the rates; this says where an issuance's time goes inside the worker).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BENCH_REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python bench/profile_worker.py --n 300 [--top 40] [--out /tmp/worker]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchdb
import redis

SCRIPT = "profile_worker.py"
BENCH_DB = "alma_bench_profile"
QUEUE = "alma-bench-profile"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="tasks per half")
    parser.add_argument("--top", type=int, default=35, help="profile lines printed per half")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--log-level", default="WARNING", help="the worker's --loglevel (INFO logs every task)")
    parser.add_argument("--out", default="", help="write each half's pstats to <out>-noop.prof / <out>-issue.prof")
    parser.add_argument("--no-profile", action="store_true", help="time the halves without cProfile")
    parser.add_argument(
        "--close-per-task",
        action="store_true",
        help="Celery's default (before CELERY_DB_REUSE_MAX): close the database connection after every task",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    url = benchdb.bench_database_url(SCRIPT, BENCH_DB, default="postgres://postgres@127.0.0.1:5432/postgres")
    benchdb.drop_database(url, BENCH_DB, recreate=True)
    os.environ.update(REDIS_URL=args.redis_url, CELERY_QUEUE=QUEUE, CELERY_TASK_ALWAYS_EAGER="0")
    os.environ["ENQUEUE_RAISE_TASK_ERRORS"] = "0"
    os.environ["LOG_LEVEL"] = args.log_level
    sys.path.insert(0, str(benchdb.ROOT / "bench"))
    tmp = tempfile.TemporaryDirectory(prefix="alma-bench-profile-")
    os.environ["OUTBOX_DIR"] = str(Path(tmp.name) / "outbox")
    (Path(tmp.name) / "outbox").mkdir()
    try:
        benchdb.django_setup(url, SCRIPT)
        benchdb.migrate()
        from celery.signals import task_postrun
        from issue_invoices import create_sessions
        from noop_tasks import noop

        from alma_billing.celery_app import app
        from invoices.tasks import invoice_issue_task

        app.conf.task_always_eager = False
        if args.close_per_task:
            from celery.signals import task_postrun as postrun
            from celery.signals import task_prerun as prerun

            from alma_billing.celery_app import close_old_connections

            app.conf.CELERY_DB_REUSE_MAX = None  # what DjangoWorkerFixup reads when the worker starts
            prerun.disconnect(close_old_connections)
            postrun.disconnect(close_old_connections)
        app.conf.broker_url = args.redis_url
        r = redis.Redis.from_url(args.redis_url)
        r.delete(QUEUE)
        session_ids = create_sessions(count=args.n, tag="p")
        from django.db import connections

        connections.close_all()
        # One worker drains, in order: 20 no-op and 20 issuance tasks (warm-up), N no-op tasks, N issuance tasks.
        # The solo pool runs one task at a time, so task_postrun marks where each half starts and ends; each half
        # is timed and profiled from the end of the task before it to the end of its last one (so the broker
        # fetch, Celery's tracer and acknowledgement of every task in it are included).
        warm = create_sessions(count=20, tag="pw")
        for _ in range(20):
            noop.apply_async(queue=QUEUE)
        for session_id in warm:
            invoice_issue_task.apply_async((session_id,), queue=QUEUE)
        for _ in range(args.n):
            noop.apply_async(queue=QUEUE)
        for session_id in session_ids:
            invoice_issue_task.apply_async((session_id,), queue=QUEUE)
        marks = {40: "noop", 40 + args.n: "issue"}
        state: dict[str, Any] = {"done": 0, "profiler": None, "started": 0.0, "half": None}
        results: list[tuple[str, float, cProfile.Profile | None]] = []

        @task_postrun.connect(weak=False)
        def _mark(**_: Any) -> None:
            state["done"] += 1
            done = state["done"]
            if state["half"] is not None and done in (40 + args.n, 40 + 2 * args.n):
                if state["profiler"]:
                    state["profiler"].disable()
                results.append((state["half"], time.perf_counter() - state["started"], state["profiler"]))
                state["half"] = None
            if done in marks:
                state["half"] = marks[done]
                state["profiler"] = None if args.no_profile else cProfile.Profile()
                state["started"] = time.perf_counter()
                if state["profiler"]:
                    state["profiler"].enable()
            if done == 40 + 2 * args.n:
                os.kill(os.getpid(), signal.SIGTERM)  # warm shutdown once the last task is acknowledged

        worker = app.Worker(
            pool_cls="solo", concurrency=1, queues=[QUEUE], loglevel=args.log_level, redirect_stdouts=False,
            without_gossip=True, without_mingle=True, without_heartbeat=True, hostname=f"profile-{os.getpid()}@%h",
        )  # fmt: skip
        load = os.getloadavg()
        worker.start()
        print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", end="")
        print(", connection closed after every task (--close-per-task)" if args.close_per_task else "")
        for name, elapsed, profiler in results:
            tag = " under cProfile" if profiler else ""
            print(f"\n== {name}: {args.n} tasks in {elapsed:.2f} s, {elapsed / args.n * 1000:.2f} ms per task{tag}")
            if profiler:
                if args.out:
                    profiler.dump_stats(f"{args.out}-{name}.prof")
                for key in ("cumulative", "tottime"):
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
                    print(out.getvalue())
    finally:
        from django.db import connections

        connections.close_all()
        benchdb.drop_database(url, BENCH_DB)
        tmp.cleanup()


if __name__ == "__main__":
    main()
