"""A no-op Celery task for bench/issue_worker.py: the worker's own task rate is the baseline for invoices.

The only work is one Redis INCR, so the bench can tell when every task ran without a result backend."""

import os

import redis
from celery import shared_task

COUNTER = "alma-bench:noop-done"
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))


@shared_task(name="bench.noop", acks_late=True)
def noop() -> None:
    _redis.incr(COUNTER)
