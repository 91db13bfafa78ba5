"""Claims tests pay and refund through the same localstripe as the payment tests."""

from tests.payments.conftest import localstripe_url, stripe_api  # noqa: F401
