"""P1 end to end through a real Celery worker on Redis: session completed -> invoice issued -> email with a link."""

import email
import email.policy
import re
from pathlib import Path

import pytest
from django.test import Client

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
