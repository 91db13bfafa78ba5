"""The payments tests' localstripe fixtures, for the card pages' hostile-input properties."""

from tests.payments.conftest import localstripe_url, stripe_api

__all__ = ["localstripe_url", "stripe_api"]
