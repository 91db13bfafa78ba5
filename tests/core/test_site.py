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


def test_healthz_reports_redis_when_configured(client: Client, settings, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = redis_url
    assert client.get("/healthz").json()["redis"] == "ok"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error")


def test_seed_demo_is_idempotent_and_dev_outbox_lists_the_links(
    settings, capsys, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
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
