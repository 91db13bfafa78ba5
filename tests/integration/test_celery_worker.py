"""P1 end to end through a real Celery worker on Redis: session completed -> invoice issued -> email with a link."""

import email
import email.policy
import re
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from invoices import services
from invoices.models import Invoice
from tests.factories import insured_session
from tests.integration.workers import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_p1_worker_issues_and_emails_the_invoice(postgres: None, redis_url: str, tmp_path: Path) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_copay_cents=2_500)
    outbox = tmp_path / "worker-outbox"

    with celery_worker(redis_url=redis_url, outbox_dir=outbox, log_path=tmp_path / "worker.log"):
        services.session_complete(session_id=session.pk, actor=SYSTEM)  # commits; on_commit queues the task
        wait_for(
            lambda: Invoice.objects.filter(session=session, emailed_at__isnull=False).exists(),
            what="the worker to issue and email the invoice",
        )

    invoice = Invoice.objects.get(session=session)
    assert invoice.amount_cents == 2_500
    files = list(outbox.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == session.patient.email
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"http://127\.0\.0\.1:8000(/pay/[A-Za-z0-9_-]{43}/)", body)
    assert match, body

    page = Client().get(match.group(1))
    assert page.status_code == 200
    assert "Phone number" in page.content.decode()


def test_a_worker_keeps_its_database_connection_between_tasks(postgres: None, redis_url: str, tmp_path: Path) -> None:
    """With CONN_MAX_AGE, a worker reuses one PostgreSQL connection for task after task, as a web worker does for
    request after request: Celery's own default would open a new one for every task (docs/performance.md)."""
    sessions = [insured_session(allowed_amount_cents=15_000, plan_copay_cents=2_500) for _ in range(3)]

    def worker_connections(since: datetime) -> list[datetime]:
        """Connections to the test database opened since the worker started (not this test's, nor what earlier
        tests of the run may have left open)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT backend_start FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_start >= %s",
                [since],
            )
            return [started for (started,) in cursor.fetchall()]

    log_path = tmp_path / "worker.log"
    started = timezone.now()
    with celery_worker(redis_url=redis_url, outbox_dir=tmp_path / "outbox", log_path=log_path, CONN_MAX_AGE="60"):
        services.session_complete(session_id=sessions[0].pk, actor=SYSTEM)
        wait_for(lambda: Invoice.objects.filter(session=sessions[0]).exists(), what="the first invoice")
        after_first = timezone.now()
        for session in sessions[1:]:
            services.session_complete(session_id=session.pk, actor=SYSTEM)
            wait_for(lambda s=session: Invoice.objects.filter(session=s).exists(), what="the next invoice")
        finished = re.compile(rb"invoice_issue_task\[[^\]]*\] succeeded")
        wait_for(lambda: len(finished.findall(log_path.read_bytes())) == 3, what="the three tasks to finish")
        open_connections = worker_connections(since=started)

    assert Invoice.objects.filter(session__in=sessions, emailed_at__isnull=False).count() == 3
    assert len(open_connections) == 1, open_connections  # the one it kept, not one per task, not none
    assert open_connections[0] < after_first  # opened for the first task and still in use after the third
