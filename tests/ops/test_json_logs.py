"""Issue 15: a request id on every request and log line; JSON lines with LOG_FORMAT=json; redaction kept in both."""

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from celery import shared_task
from django.test import Client

from alma_billing.log_privacy import (
    JsonFormatter,
    RedactPathsFilter,
    RequestIdFilter,
    current_request_id,
    logging_config,
)
from tests.integration import workers

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """A handler configured as LOG_FORMAT=json configures the console one: redaction, ids, JSON."""
    current_request_id.set(None)  # a test elsewhere may have left a response unclosed (no request_finished)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPathsFilter())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def _records(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.django_db
def test_every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() -> None:
    first, second = Client().get("/healthz"), Client().get("/healthz")
    assert len(first["X-Request-ID"]) == 32 and first["X-Request-ID"] != second["X-Request-ID"]
    kept = Client().get("/healthz", HTTP_X_REQUEST_ID="3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b")
    assert kept["X-Request-ID"] == "3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hostile",
    ["x" * 65, "short", "has spaces in it", "robin@example.org", "id\r\nSet-Cookie: a=b", "idé-ünicode-123", "a;b=c,d"],
)
def test_an_insane_incoming_request_id_is_replaced(hostile: str) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=hostile)
    assert response["X-Request-ID"] != hostile and len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_each_log_line_of_a_request_is_json_with_its_request_id_and_no_token(json_lines: io.StringIO) -> None:
    response = Client().get(f"/pay/{TOKEN}/nothing-here/?email=robin%40example.org", HTTP_X_REQUEST_ID="req-abcdef12")
    assert response.status_code == 404 and response["X-Request-ID"] == "req-abcdef12"
    records = [r for r in _records(json_lines) if r["logger"] == "django.request"]
    assert records, json_lines.getvalue()
    assert records[0]["request_id"] == "req-abcdef12" and records[0]["level"] == "WARNING"
    assert "/pay/[token]/nothing-here/" in records[0]["message"]
    assert TOKEN not in json_lines.getvalue() and "robin" not in json_lines.getvalue()


def test_outside_a_request_a_line_has_no_request_id_and_emails_and_tracebacks_are_redacted(
    json_lines: io.StringIO,
) -> None:
    logger = logging.getLogger("tests.ops")
    try:
        raise ValueError("could not email robin@example.org at +12025550143")
    except ValueError:
        logger.exception("reminder 7 failed for robin@example.org")
    (record,) = [r for r in _records(json_lines) if r["logger"] == "tests.ops"]
    assert record["message"] == "reminder 7 failed for [email]" and "request_id" not in record
    assert "ValueError: could not email [email] at [phone]" in record["exc"]
    assert "robin" not in json_lines.getvalue() and "2025550143" not in json_lines.getvalue()


@shared_task
def logging_task(invoice_id: int) -> int:
    logging.getLogger("tests.ops.task").info("invoice %s emailed", invoice_id)
    return invoice_id


def test_a_celery_task_line_carries_the_task_id(json_lines: io.StringIO) -> None:
    result = logging_task.apply(args=(42,), task_id="task-0123456789")
    # Not result.get(): Celery's "no joins inside a task" flag is process-wide, and a live-server thread left running
    # an eager task by an earlier test can have it set at this moment.
    assert result.successful() and result.result == 42
    (record,) = [r for r in _records(json_lines) if r["logger"] == "tests.ops.task"]
    assert record["task_id"] == "task-0123456789" and record["message"] == "invoice 42 emailed"


def test_the_logging_configuration_for_json_is_valid_and_plain_stays_plain() -> None:
    import logging.config

    config = logging_config("INFO", "json")
    assert config["handlers"]["console"]["formatter"] == "json"
    assert config["handlers"]["console"]["filters"] == ["redact_paths", "request_id"]
    assert logging_config("INFO")["handlers"]["console"]["formatter"] == "plain"
    logging.config.dictConfig({**config, "root": {"handlers": [], "level": "INFO"}})  # loads without error


def test_an_unknown_log_format_stops_startup() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test", "LOG_FORMAT": "xml"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "LOG_FORMAT must be 'plain' or 'json'" in result.stderr


@pytest.mark.django_db
def test_gunicorn_with_log_format_json_writes_json_access_lines_with_the_request_id(tmp_path: Path) -> None:
    with workers.bin_web(tmp_path, LOG_FORMAT="json") as base:
        missing = requests.get(f"{base}/pay/{TOKEN}/nothing-here/?email=robin%40example.org", timeout=10)
    request_id = missing.headers["X-Request-ID"]
    access = [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines() if line.strip()]
    errors = [json.loads(line) for line in (tmp_path / "stderr.log").read_text().splitlines() if line.startswith("{")]
    (line,) = [a for a in access if "nothing-here" in a["message"]]
    assert line["request_id"] == request_id and "/pay/[token]/nothing-here/?[query]" in line["message"]
    (django_line,) = [e for e in errors if e["logger"] == "django.request"]
    assert django_line["request_id"] == request_id
    everything = (tmp_path / "stdout.log").read_text() + (tmp_path / "stderr.log").read_text()
    assert TOKEN not in everything and "robin" not in everything


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_with_log_format_json_writes_json_lines_with_the_task_id(
    postgres: None, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alma_billing.core.audit import SYSTEM
    from invoices import services
    from invoices.models import Invoice
    from tests.factories import insured_session
    from tests.integration.workers import celery_worker, wait_for

    monkeypatch.setenv("LOG_FORMAT", "json")
    session = insured_session(allowed_amount_cents=15_000, plan_copay_cents=2_500)
    log_path = tmp_path / "worker.log"
    with celery_worker(redis_url=redis_url, outbox_dir=tmp_path / "outbox", log_path=log_path):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
        wait_for(
            lambda: Invoice.objects.filter(session=session, emailed_at__isnull=False).exists(),
            what="the worker to issue and email the invoice",
        )
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    emailed = [r for r in lines if r["logger"] == "invoices.services" and "emailed to patient" in r["message"]]
    assert emailed, log_path.read_text()
    assert emailed[0]["task_id"] and emailed[0]["level"] == "INFO"
    succeeded = [r for r in lines if "succeeded" in r["message"] and "invoice_issue_task" in r["message"]]
    assert succeeded and succeeded[0]["task_id"] == emailed[0]["task_id"]
    assert session.patient.email not in log_path.read_text()
