"""The daily housekeeping job: expired sessions and old access attempts go; anything still counting toward a limit
(a lockout, the per-IP hour, the send window) stays. Registered as a periodic task by migrate like the others."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alma_billing.core.tasks import attempt_retention, housekeeping_task
from tests.factories import PatientFactory
from verification.models import AccessAttempt, LocalVerification

pytestmark = pytest.mark.django_db


def attempt(patient, age: timedelta, *, kind: str = AccessAttempt.Kind.CODE, ok: bool = False) -> AccessAttempt:
    return AccessAttempt.objects.create(
        kind=kind, succeeded=ok, patient=patient, ip_address="198.51.100.7", created_at=timezone.now() - age
    )


def session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["patient"] = 1
    store.set_expiry(expires_in)
    store.save()
    return store.session_key  # type: ignore[return-value]


def test_old_rows_go_and_rows_still_counting_toward_a_limit_stay(settings) -> None:
    patient = PatientFactory()
    retention = attempt_retention()
    assert retention == timedelta(days=7)
    old = [attempt(patient, retention + timedelta(minutes=1)), attempt(patient, timedelta(days=30), ok=True)]
    # Within the lockout window (the 5th wrong code locks the patient out), the per-IP hour and the send window.
    recent = [attempt(patient, timedelta(minutes=m)) for m in (1, 5, 9, 25, 29, 59)]
    recent.append(attempt(patient, timedelta(minutes=3), kind=AccessAttempt.Kind.SEND, ok=True))
    kept_a_while = attempt(patient, retention - timedelta(hours=1))
    expired, live = session(timedelta(seconds=-60)), session(timedelta(minutes=15))
    LocalVerification.objects.create(phone="+12025550143", code_hash="x", expires_at=timezone.now() - timedelta(days=2))
    pending = LocalVerification.objects.create(
        phone="+12025550143", code_hash="y", expires_at=timezone.now() + timedelta(minutes=5)
    )

    counts = housekeeping_task.delay().get()

    assert counts == {"sessions": 1, "access_attempts": 2, "local_verifications": 1}
    remaining = set(AccessAttempt.objects.values_list("pk", flat=True))
    assert remaining == {a.pk for a in [*recent, kept_a_while]}
    assert not remaining & {a.pk for a in old}
    assert list(Session.objects.values_list("session_key", flat=True)) == [live] and expired != live
    assert list(LocalVerification.objects.values_list("pk", flat=True)) == [pending.pk]


def test_a_short_retention_never_cuts_into_a_lockout(settings) -> None:
    settings.ACCESS_ATTEMPT_RETENTION = timedelta(minutes=1)
    settings.VERIFY_LOCKOUT = timedelta(hours=3)
    assert attempt_retention() == timedelta(hours=3)
    patient = PatientFactory()
    locking = [attempt(patient, timedelta(hours=2, minutes=n)) for n in range(5)]  # still a lockout for an hour
    housekeeping_task.delay().get()
    assert AccessAttempt.objects.filter(pk__in=[a.pk for a in locking]).count() == 5


def test_housekeeping_is_a_default_periodic_task() -> None:
    task = PeriodicTask.objects.get(name="housekeeping-daily")
    assert task.task == "alma_billing.core.tasks.housekeeping_task" and task.enabled
    assert task.crontab is not None and (task.crontab.hour, task.crontab.minute) == ("3", "30")
