"""Shared fixtures: the outbox, and the services some tests need (the rule itself is in tests/needs.py).

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

from tests.needs import REQUIRE_SERVICES, need, redis_available


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
