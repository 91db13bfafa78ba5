"""Health check, dev outbox and demo seed: what a new developer and the load balancer rely on."""

import pytest
from django.core.management import call_command
from django.test import Client

from invoices.models import Invoice, Patient, TherapySession

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_database(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_healthz_says_degraded_but_stays_up_when_redis_is_down(client: Client, settings, redis_url: str) -> None:
    settings.REDIS_URL = redis_url
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/healthz")
    # Patients can still pay without Redis (emails wait for the sweeps): a load balancer must not pull the site.
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["redis"].startswith("error")


def test_seed_demo_is_idempotent_and_dev_outbox_lists_the_links(
    settings, capsys, django_capture_on_commit_callbacks
) -> None:
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "alma_billing.core.mail.OutboxEmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")
    counts = (Patient.objects.count(), TherapySession.objects.count(), Invoice.objects.count())
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")

    assert (Patient.objects.count(), TherapySession.objects.count(), Invoice.objects.count()) == counts
    assert Invoice.objects.filter(status=Invoice.Status.OPEN).count() == 4  # one for Jordan, three for Sam
    assert TherapySession.objects.filter(billing_outcome=TherapySession.Outcome.NEEDS_ATTENTION).count() == 1
    printed = capsys.readouterr().out
    assert "/dev/outbox/" in printed and "ops / ops-demo-password" in printed

    page = Client().get("/dev/outbox/").content.decode()
    assert page.count("<strong>You have a new invoice from Alma</strong>") == 4
    assert page.count('href="http://127.0.0.1:8000/pay/') == 4


def test_dev_outbox_is_not_served_without_debug(client: Client) -> None:
    assert client.get("/dev/outbox/").status_code == 404


def test_seed_demo_refuses_without_debug() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")


def test_periodic_tasks_are_installed_once_and_ops_edits_are_kept() -> None:
    from django.apps import apps
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    from alma_billing.core.apps import periodic_tasks_ensure

    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {"invoices-sweep", "reminders-daily", "autopay-due", "payments-reconcile"} <= names
    reminders = PeriodicTask.objects.get(name="reminders-daily")
    assert reminders.task == "invoices.tasks.reminders_run_task" and reminders.crontab.hour == "10"

    # Ops move the reminders to 08:30 in the admin; the next migrate (or deploy) keeps that.
    reminders.crontab = CrontabSchedule.objects.create(minute="30", hour="8")
    reminders.save()
    periodic_tasks_ensure(sender=apps.get_app_config("django_celery_beat"))
    assert PeriodicTask.objects.get(name="reminders-daily").crontab.hour == "8"
