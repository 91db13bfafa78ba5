"""Mailgun is configured with the signing key the events in tests/ops/flows.py are signed with."""

from typing import Any

import pytest

from tests.ops.flows import SIGNING_KEY


@pytest.fixture(autouse=True)
def mailgun_configured(settings: Any) -> None:
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
