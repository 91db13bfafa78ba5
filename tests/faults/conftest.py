"""Fault-test fixtures: localstripe and the patient from the paying tests, and a private broker."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import pools as kombu_pools

from alma_billing.celery_app import app as celery_app
from alma_billing.core import queue
from tests.faults.redis_server import PrivateRedis, private_redis
from tests.payments.conftest import localstripe_url, patient, stripe_api  # noqa: F401  (fixtures used here)


@pytest.fixture
def broker(tmp_path: Path, settings: Any) -> Iterator[PrivateRedis]:
    """Tasks go to a private Redis (not run in-process), as in production; the test stops it when it likes."""
    eager, broker_url = celery_app.conf.task_always_eager, celery_app.conf.broker_url
    with private_redis(tmp_path) as server:
        settings.REDIS_URL = server.url
        _reset_pool()
        celery_app.conf.task_always_eager = False
        celery_app.conf.broker_url = server.url  # type: ignore[misc]  # the stubs miss its setter
        try:
            yield server
        finally:
            _reset_pool()
            celery_app.conf.task_always_eager, celery_app.conf.broker_url = eager, broker_url  # type: ignore[misc]


def _reset_pool() -> None:
    """Connections to an earlier broker must not be reused (kombu keeps process-wide pools of them), and the
    enqueue back-off of an earlier test must not carry over."""
    queue._broker_down_until = 0.0
    kombu_pools.reset()
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]
