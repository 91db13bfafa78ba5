"""Fixtures for paying: localstripe started once per test session, wiped for each test."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.factories import PatientFactory
from tests.payments import stripe_fake


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with stripe_fake.localstripe_process() as url:
        yield url


@pytest.fixture
def stripe_api(localstripe_url: str, settings: Any) -> str:
    requests.delete(f"{localstripe_url}/_config/data", timeout=5)
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_JS_URL = f"{localstripe_url}/js.stripe.com/v3/"
    return localstripe_url


@pytest.fixture
def patient() -> Any:
    return PatientFactory(phone="+12025550143")
