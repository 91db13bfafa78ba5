"""Queueing Celery tasks without putting the broker on the money path.

Every task queued after a commit has a database record a sweep can finish from (a session awaiting billing, an
invoice awaiting its email, a receipt not yet sent, a card still to detach, ...). So a broker that is down, slow or
refusing only delays that work: the enqueue is logged and dropped, the request goes on, and the sweep delivers it
once Redis is back. Tasks are idempotent, so a sweep racing a late delivery does the work once.
"""

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

# One quick retry for a blip; a broker that stays down is the sweeps' business, not the patient's.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue(task: Any, *args: Any) -> bool:
    """Queue `task(*args)` now. Returns False (and logs) instead of raising when the broker cannot take it.

    Eager mode (no REDIS_URL: development, tests) runs the task here; its failure is logged the same way, because
    the caller's transaction has already committed and its patient must still see the truth.
    """
    try:
        task.apply_async(args=args, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as error:  # kombu/redis errors, timeouts, or an eager task failing: never the caller's problem
        logger.warning(
            "could not queue %s%r (%s); the database sweep will finish it",
            getattr(task, "name", task),
            args,
            type(error).__name__,
            exc_info=not isinstance(error, OSError | ConnectionError),
        )
        return False
    return True


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Queue `task(*args)` once the current transaction commits (at once outside one); never raises."""
    transaction.on_commit(lambda: enqueue(task, *args))
