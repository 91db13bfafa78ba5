"""Housekeeping: expired sessions and access attempts too old to count toward any limit (beat, daily)."""

import logging
from datetime import timedelta
from importlib import import_module

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from verification.models import AccessAttempt, LocalVerification

logger = logging.getLogger(__name__)

# Local (development) SMS verifications are kept this long past their expiry, then deleted.
LOCAL_VERIFICATION_KEEP = timedelta(days=1)


def attempt_retention() -> timedelta:
    """How long access attempts are kept: ACCESS_ATTEMPT_RETENTION, but never shorter than the longest window in which
    verification/services.py counts them (per-patient lockout, per-IP hour, code sends), so deleting rows can
    never shorten a lockout or reset a limit."""
    longest_window = max(settings.VERIFY_LOCKOUT, timedelta(hours=1), settings.VERIFY_SEND_WINDOW)
    return max(settings.ACCESS_ATTEMPT_RETENTION, longest_window)


def housekeeping() -> dict[str, int]:
    now = timezone.now()
    # Database sessions (the default engine) keep their rows after expiry; clear_expired() is what `clearsessions`
    # runs. Engines that expire on their own (cache, signed cookies) do nothing here.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    sessions_cleared = 0
    if hasattr(store, "get_model_class"):  # database-backed: count what clear_expired() is about to delete
        sessions_cleared = store.get_model_class().objects.filter(expire_date__lt=now).count()
    store.clear_expired()
    attempts, _ = AccessAttempt.objects.filter(created_at__lt=now - attempt_retention()).delete()
    local_codes, _ = LocalVerification.objects.filter(expires_at__lt=now - LOCAL_VERIFICATION_KEEP).delete()
    counts = {"sessions": sessions_cleared, "access_attempts": attempts, "local_verifications": local_codes}
    logger.info(
        "housekeeping: %s expired sessions, %s access attempts, %s local verifications deleted",
        counts["sessions"],
        counts["access_attempts"],
        counts["local_verifications"],
    )
    return counts


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), retry_backoff=True)
def housekeeping_task() -> dict[str, int]:
    return housekeeping()
