"""Queueing Celery tasks without putting the broker on the money path.

Every task queued after a commit has a database record a sweep can finish from (a session awaiting billing, an
invoice awaiting its email, a receipt not yet sent, a card still to detach, ...). So a broker that is down, slow or
refusing only delays that work: the enqueue is logged and dropped, the request goes on, and the sweep delivers it
once Redis is back. Tasks are idempotent, so a sweep racing a late delivery does the work once.

A broker that hangs (rather than refusing) would cost every request its socket timeout, so after one failure this
process stops trying for BROKER_BACKOFF_SECONDS: the sweeps do that work too.
"""

import logging
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError

logger = logging.getLogger(__name__)

# One quick retry for a blip; a broker that stays down is the sweeps' business, not the patient's.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
BROKER_ERRORS: tuple[type[BaseException], ...] = (OperationalError, KombuError, OSError, TimeoutError)
try:
    import redis

    BROKER_ERRORS += (redis.RedisError,)
except ImportError:  # pragma: no cover - redis is a dependency
    pass

_broker_down_until = 0.0


def enqueue(task: Any, *args: Any) -> bool:
    """Queue `task(*args)` now. Returns False (and logs) instead of raising when the broker cannot take it.

    Eager mode (no REDIS_URL: development, tests) runs the task here. Its failure is logged at ERROR and not raised
    (the caller's transaction has committed and its patient must still read the truth), except where
    ENQUEUE_RAISE_TASK_ERRORS is on (the test settings), so that a task's bug fails the test that ran it.
    """
    global _broker_down_until
    name = getattr(task, "name", repr(task))
    eager = bool(getattr(task.app.conf, "task_always_eager", False)) if hasattr(task, "app") else False
    if not eager and time.monotonic() < _broker_down_until:
        logger.warning(
            "not queueing %s%r: the broker failed moments ago; the database sweep will finish it", name, args
        )
        return False
    try:
        task.apply_async(args=args, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except BROKER_ERRORS as error:
        if not eager:
            _broker_down_until = time.monotonic() + settings.BROKER_BACKOFF_SECONDS
            logger.warning(
                "could not queue %s%r (%s); the database sweep will finish it", name, args, type(error).__name__
            )
            return False
        _eager_failed(name, args, error)
        return False
    except Exception as error:  # an eager task's own failure (a worker would have logged and retried it)
        _eager_failed(name, args, error)
        return False
    _broker_down_until = 0.0
    return True


def _eager_failed(name: str, args: tuple[Any, ...], error: BaseException) -> None:
    logger.error("task %s%r failed in-process (%s); the database sweep retries it", name, args, type(error).__name__)
    if settings.ENQUEUE_RAISE_TASK_ERRORS:
        raise error


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Queue `task(*args)` once the current transaction commits (at once outside one); never raises."""
    transaction.on_commit(lambda: enqueue(task, *args))
