"""A no-op Celery task for bench/issue_worker.py: the worker's own task rate is the baseline for invoices.

The only work is one Redis INCR, so the bench can tell when every task ran without a result backend. The worker
also records how long each task ran (task_prerun to task_postrun, in the worker process) in DURATIONS, so the bench
can tell the time spent in the tasks from the time around them (broker, pool, acknowledgements)."""

import os
import time
from typing import Any

import redis
from celery import shared_task
from celery.signals import task_postrun, task_prerun

COUNTER = "alma-bench:noop-done"
DURATIONS = "alma-bench:task-seconds"
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id: str = "", **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        _redis.rpush(DURATIONS, f"{getattr(task, 'name', '?')} {time.perf_counter() - started:.6f}")


@shared_task(name="bench.noop", acks_late=True)
def noop() -> None:
    _redis.incr(COUNTER)
