"""Core tests reuse the payments fixtures: localstripe, started once per session and wiped for each test."""

from tests.payments.conftest import localstripe_url, stripe_api  # noqa: F401 (fixtures)
