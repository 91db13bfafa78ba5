"""The rule for tests that need PostgreSQL, Redis, a worker or Chromium: without the service they skip and say why;
with ALMA_REQUIRE_SERVICES=1 (CI) they fail."""

import os

import pytest

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
