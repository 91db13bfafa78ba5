"""P6 through a real Celery worker on Redis and localstripe: an autopay charge is taken once, even when the worker
running it is killed in the middle of the Stripe call, and even when the same task is queued twice at once.

The worker reaches localstripe through a small proxy in this test process, which holds the create-and-confirm
call (`POST /v1/payment_intents`) for a moment: long enough to kill the pool child while it waits for Stripe's
answer, after which the proxy sends the request on anyway, as Stripe processes a request whose client went away.
"""

import email
import email.policy
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from alma_billing.celery_app import app as celery_app
from invoices.models import Invoice, Practice
from payments.models import AutopayAttempt, AutopayEnrollment, Payment
from payments.tasks import autopay_attempt_task
from tests.factories import AutopayAttemptFactory, InvoiceFactory
from tests.integration.workers import celery_worker, wait_for
from tests.payments import stripe_fake
from tests.payments.conftest import localstripe_url, stripe_api  # noqa: F401  (fixtures used here)
from tests.payments.flows import enroll, practice_patient, verified_client
from tests.payments.stripe_fake import StripeProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("stripe_api")]

RECEIPT = "Your payment to Alma was received"


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (what `pgrep -P` does; /proc/<pid>/task/*/children is not always there)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def receipts(outbox: Path) -> list[email.message.EmailMessage]:
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in outbox.glob("*.eml")
    ]
    return [m for m in messages if m["Subject"] == RECEIPT]


def enrolled_attempt() -> tuple[Invoice, AutopayAttempt]:
    """A patient enrolled in autopay with a good card, a new open invoice, and its first attempt, due now."""
    provider, first = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    assert enroll(verified_client(first))["status"] == "enrolled"
    invoice = InvoiceFactory(session__patient=first.patient, session__provider=provider, amount_cents=5_000)
    attempt = AutopayAttemptFactory(invoice=invoice, enrollment=AutopayEnrollment.objects.get())
    return invoice, attempt


def succeeded_intents(invoice: Invoice) -> list[Any]:
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert customer
    return [i for i in stripe_fake.intents_for(customer) if i.status == "succeeded"]


def test_p6_autopay_charge_survives_a_worker_killed_mid_charge(
    postgres: None, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoice, attempt = enrolled_attempt()
    outbox, log_path = tmp_path / "worker-outbox", tmp_path / "worker.log"

    with StripeProxy(settings.STRIPE_API_BASE, hold_seconds=2).running() as proxy:
        monkeypatch.setenv("STRIPE_API_BASE", proxy.url)  # celery_worker hands os.environ to the worker
        with celery_worker(redis_url=redis_url, outbox_dir=outbox, log_path=log_path) as worker:
            (child,) = children_of(worker.pid)  # prefork, one pool process
            autopay_attempt_task.delay(attempt.pk)
            assert proxy.create_seen.wait(timeout=30), log_path.read_text()
            os.kill(child, signal.SIGKILL)  # mid-charge: the request is at "Stripe", the answer never comes back
            assert not proxy.create_sent.is_set()  # killed before Stripe had even taken the money

            wait_for(
                lambda: Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID,
                timeout=60,
                what="the redelivered task to finish the charge",
            )
            wait_for(lambda: len(receipts(outbox)) >= 1, what="the receipt email")
            time.sleep(1)  # a duplicate receipt, if any, would be on its way
            assert child not in children_of(worker.pid)  # a new pool process ran the redelivered task

    log = log_path.read_text()
    assert "WorkerLostError" in log and "signal 9" in log, log
    assert log.count("Task payments.tasks.autopay_attempt_task[") >= 2, log  # received, then received again
    payment = Payment.objects.get(allocations__invoice=invoice)
    assert payment.status == Payment.Status.SUCCEEDED and payment.source == Payment.Source.AUTOPAY
    assert payment.charge_attempts >= 2  # the second run counted itself and looked for the first run's intent
    assert proxy.creates == 1, proxy.lines  # ... and found it, so it did not create another
    (intent,) = succeeded_intents(invoice)
    assert intent.id == payment.stripe_payment_intent_id and intent.amount == 5_000
    attempt.refresh_from_db()
    assert attempt.status == AutopayAttempt.Status.SUCCEEDED and attempt.payment_id == payment.pk
    assert len(receipts(outbox)) == 1
    assert receipts(outbox)[0]["To"] == invoice.patient.email


def test_p6_the_same_autopay_task_queued_twice_charges_once(
    postgres: None, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoice, attempt = enrolled_attempt()
    outbox, log_path = tmp_path / "worker-outbox", tmp_path / "worker.log"
    test_db = connection.settings_dict["NAME"]

    def someone_waits_on_a_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", [test_db]
            )
            return bool(cursor.fetchone()[0])

    with StripeProxy(settings.STRIPE_API_BASE, hold_seconds=1.5).running() as proxy:
        monkeypatch.setenv("STRIPE_API_BASE", proxy.url)
        with celery_worker(redis_url=redis_url, outbox_dir=outbox, log_path=log_path) as worker:
            # celery_worker starts one pool process; grow it to two so both copies run at the same time.
            node = f"test-{os.getpid()}@{socket.gethostname()}"
            replies = celery_app.control.pool_grow(1, destination=[node], reply=True, timeout=10)
            assert replies and "ok" in replies[0][node], replies
            wait_for(lambda: len(children_of(worker.pid)) == 2, what="a second pool process")

            autopay_attempt_task.delay(attempt.pk)
            autopay_attempt_task.delay(attempt.pk)
            assert proxy.create_seen.wait(timeout=30), log_path.read_text()
            # While the first copy waits for Stripe, the second copy waits for the payment's row lock.
            wait_for(someone_waits_on_a_lock, timeout=5, what="the second copy to wait on the first")

            wait_for(
                lambda: Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID,
                timeout=60,
                what="the invoice to be paid",
            )
            wait_for(lambda: log_path.read_text().count("autopay_attempt_task[") >= 4, what="both copies to end")
            wait_for(lambda: len(receipts(outbox)) >= 1, what="the receipt email")
            time.sleep(1)

    assert Payment.objects.filter(allocations__invoice=invoice).count() == 1
    assert proxy.creates == 1, proxy.lines
    assert len(succeeded_intents(invoice)) == 1
    attempt.refresh_from_db()
    assert attempt.status == AutopayAttempt.Status.SUCCEEDED
    assert len(receipts(outbox)) == 1
    assert "WorkerLostError" not in log_path.read_text()
