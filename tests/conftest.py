"""Shared fixtures: factories, and the rule for tests that need PostgreSQL, Redis, a worker or Chromium.

On a laptop without those services such tests skip with a clear reason; with ALMA_REQUIRE_SERVICES=1 (CI) they fail.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.utils import translation

REQUIRE_SERVICES = os.environ.get("ALMA_REQUIRE_SERVICES") == "1"


def need(service: str, available: bool, why: str) -> None:
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{service} is required here (ALMA_REQUIRE_SERVICES=1) but {why}", pytrace=False)
    pytest.skip(f"needs {service}: {why}")


def redis_available() -> bool:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def postgres() -> None:
    need("PostgreSQL", connection.vendor == "postgresql", "DATABASE_URL is not a PostgreSQL database")


@pytest.fixture
def redis_url() -> str:
    need("Redis", redis_available(), "REDIS_URL is unset or Redis does not answer")
    return os.environ["REDIS_URL"]


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need("Chromium", Path(path).exists(), "Debian chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def outbox() -> list[mail.EmailMessage]:
    return mail.outbox  # pytest-django points Django at the locmem backend and empties it per test


@pytest.fixture(autouse=True)
def _tmp_outbox_dir(settings: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    settings.OUTBOX_DIR = tmp_path / "outbox"  # type: ignore[attr-defined]
    yield
    # A Spanish request leaves its language active in this thread (LocaleMiddleware never deactivates it):
    # without this, a later test's messages would come out in Spanish.
    translation.deactivate()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if REQUIRE_SERVICES and skipped:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"ALMA_REQUIRE_SERVICES=1: {len(skipped)} test(s) skipped; failing the run.", red=True)
