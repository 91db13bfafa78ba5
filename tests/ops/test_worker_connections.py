"""A Celery worker keeps its database connection between tasks, as Django keeps one between requests (CONN_MAX_AGE),
instead of Celery's default of a new PostgreSQL connection per task (~15 ms of an issuance; docs/performance.md)."""

from types import SimpleNamespace
from typing import Any

import pytest
from celery.signals import task_postrun, task_prerun
from django.conf import settings

from alma_billing.celery_app import app, close_old_connections


def _task(*, eager: bool) -> Any:
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


def test_the_django_fixup_does_not_close_connections_after_every_task() -> None:
    """Celery's DjangoWorkerFixup reads CELERY_DB_REUSE_MAX when the worker starts; unset, it closes every
    connection after every task whatever CONN_MAX_AGE says."""
    assert settings.CELERY_DB_REUSE_MAX >= 100
    assert app.conf.get("CELERY_DB_REUSE_MAX") == settings.CELERY_DB_REUSE_MAX


def test_each_worker_task_closes_old_connections_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Django does around a request (CONN_MAX_AGE, broken or errored connections, health checks) runs around
    each task the worker runs."""
    for signal in (task_prerun, task_postrun):
        assert any(receiver is close_old_connections for _, receiver, *_ in signal.receivers)  # strong refs
    calls: list[str] = []
    monkeypatch.setattr("django.db.close_old_connections", lambda: calls.append("closed"))
    close_old_connections(task=_task(eager=False))
    assert calls == ["closed"]


def test_an_eager_task_leaves_its_callers_connection_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An eager task runs inside its caller's request or transaction: closing its connection there would break it."""
    calls: list[str] = []
    monkeypatch.setattr("django.db.close_old_connections", lambda: calls.append("closed"))
    close_old_connections(task=_task(eager=True))
    assert calls == []
