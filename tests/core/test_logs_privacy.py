"""Logs carry ids, never patient data, at every level (DESIGN.md, Privacy): a whole patient journey at DEBUG leaves
no name, phone, email, amount, card detail or pay-link token in any log record or on stdout/stderr; the SDK loggers
stay pinned whatever LOG_LEVEL says; Django's and gunicorn's request logs show /pay/[token]/."""

import logging
import logging.config
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from alma_billing.log_privacy import PINNED_LOGGERS, RedactPathsFilter, logging_config, redact
from payments.models import Payment
from tests.factories import PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import open_invoices, pay
from tests.verification.helpers import link_for, verify

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"  # 43 URL-safe characters, like a real pay-link token


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """The logging LOG_LEVEL=DEBUG configures (root handler at DEBUG), restored to the test settings afterwards."""
    logging.config.dictConfig(logging_config("DEBUG"))
    yield
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"GET /pay/{TOKEN}/ HTTP/1.1", "GET /pay/[token]/ HTTP/1.1"),
        (f"Not Found: /pay/{TOKEN}/extra/", "Not Found: /pay/[token]/extra/"),
        ("/pay/short-guess/", "/pay/[token]/"),
        (f"https://billing.example.com/pay/{TOKEN}/?utm=x", "https://billing.example.com/pay/[token]/?[query]"),
        ("GET /pay/payments/12/receipt.pdf?download=1 HTTP/1.1", "GET /pay/payments/12/receipt.pdf?[query] HTTP/1.1"),
        (f"GET /receipts/{TOKEN}/ HTTP/1.1", "GET /receipts/[token]/ HTTP/1.1"),
        ("/pay/code/", "/pay/code/"),
        ("/pay/invoices/INV-000123/", "/pay/invoices/INV-000123/"),
        ("/pay/payments/12/", "/pay/payments/12/"),
        ("/admin/invoices/invoice/3/change/", "/admin/invoices/invoice/3/change/"),
        ("invoice 12 emailed to patient 7", "invoice 12 emailed to patient 7"),
        ("DETAIL:  Key (email)=(marisol.q@example.org) exists.", "DETAIL:  Key (email)=([email]) exists."),
        ("to +12025550143, status pending", "to [phone], status pending"),
        ("Did it work? yes", "Did it work? yes"),
    ],
)
def test_redact_hides_tokens_and_query_strings_and_keeps_the_rest(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    try:
        raise ValueError(f"no route for /pay/{TOKEN}/")
    except ValueError:
        record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "%s: %s", ("Not Found", "x"), None)
        record.args = ("Not Found", f"/pay/{TOKEN}/")
        record.exc_info = sys.exc_info()
    assert RedactPathsFilter().filter(record) is True
    assert record.getMessage() == "Not Found: /pay/[token]/"
    assert TOKEN not in logging.Formatter().format(record)


def test_sdk_loggers_are_pinned_at_warning_whatever_log_level_says(debug_logging: None) -> None:
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    for name in (*PINNED_LOGGERS, "stripe._http_client", "twilio.http_client", "urllib3.connectionpool"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert logging.getLogger("invoices.services").isEnabledFor(logging.DEBUG)  # our own loggers follow LOG_LEVEL


def test_a_stricter_log_level_also_applies_to_the_pinned_loggers() -> None:
    config = logging_config("ERROR")
    assert config["loggers"]["stripe"]["level"] == "ERROR" and config["root"]["level"] == "ERROR"


def test_twilio_request_log_with_the_phone_is_dropped(debug_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    from twilio.http.http_client import TwilioHttpClient

    caplog.set_level(logging.DEBUG)
    TwilioHttpClient(timeout=1).log_request(
        {
            "method": "POST",
            "url": "https://verify.twilio.com/v2/Services/VA0/Verifications",
            "params": {"To": "+12025550143", "Channel": "sms"},
            "headers": {"User-Agent": "test"},
        }
    )
    assert caplog.records == []


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    found = []
    for what, value in secrets.items():
        pattern = re.escape(value) if not value.isdigit() else rf"(?<![\w.]){re.escape(value)}(?![\w])"
        if re.search(pattern, text, re.IGNORECASE):
            found.append(f"{what} ({value})")
    return found


@pytest.mark.django_db
def test_a_whole_patient_journey_at_debug_logs_no_patient_data(
    stripe_api: str,
    debug_logging: None,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    django_capture_on_commit_callbacks,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger propagating to the root, at DEBUG
    caplog.set_level(logging.DEBUG, logger="django")  # Django's own default is INFO: open it up too
    connection.force_debug_cursor = True  # SQL is logged with its parameters, as with DEBUG on
    try:
        patient = PatientFactory(
            first_name="Marisol", last_name="Quintanilla", email="marisol.q@example.org", phone="+12025550143"
        )
        (invoice,) = open_invoices(patient, 7_000)
        url = link_for(invoice)
        token = url.split("/")[2]
        client = Client()
        verify(client, url)  # the link, the phone (national format), the SMS code through the local backend
        assert "$70.00" in client.get("/pay/invoices/").content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            result = pay(client, "all")  # the card saved as Stripe.js would, then charged, against localstripe
        assert result["status"] == "succeeded"
        payment = Payment.objects.get()
        assert client.get(result["redirect"]).status_code == 200
        assert client.get(f"/pay/payments/{payment.pk}/receipt.pdf").status_code == 200
        # A mistyped link (Django logs "Not Found: <path>" on django.request) and a query string.
        assert client.get(f"{url}extra/?email={patient.email}").status_code == 404
        logging.getLogger("payments.services").debug("canary at DEBUG")  # the capture sees DEBUG records
    finally:
        connection.force_debug_cursor = False

    logged = []
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        logged.append(formatter.format(record))
    printed = capfd.readouterr()
    everything = "\n".join([*logged, printed.out, printed.err])

    secrets = {
        "first name": "Marisol",
        "last name": "Quintanilla",
        "email": "marisol.q@example.org",
        "phone E.164": "+12025550143",
        "phone digits": "2025550143",
        "phone national": "(202) 555-0143",
        "phone local": "555-0143",
        "amount": "70.00",
        "amount in cents": "7000",
        "card number": stripe_fake.GOOD_CARD,
        "card last 4": "4242",
        "card brand and last 4": "visa 4242",
        "token": token,
        "provider": invoice.provider.display_name,
    }
    assert _leaks(everything, secrets) == []
    # Not vacuous: DEBUG records are captured, and the 404's path was logged (redacted).
    assert any(r.levelno == logging.DEBUG and r.getMessage() == "canary at DEBUG" for r in caplog.records)
    assert any(r.name == "django.request" and "/pay/[token]/extra/" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.name.split(".")[0] in {"stripe", "twilio", "urllib3"}]


def test_stripe_log_debug_in_the_environment_prints_nothing(tmp_path: Path) -> None:
    """STRIPE_LOG=debug makes the Stripe SDK print request bodies to stderr, bypassing logging: settings turn it off."""
    script = (
        "import django, logging; django.setup()\n"
        "from stripe import _util\n"
        "_util.log_debug('API request body', body='email=marisol.q%40example.org&amount=7000')\n"
        "_util.log_info('Request to Stripe api', url='/v1/customers?email=marisol.q@example.org')\n"
        "print('done')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test",
        "STRIPE_LOG": "debug",
        "LOG_LEVEL": "DEBUG",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "marisol" not in done.stderr and "7000" not in done.stderr, done.stderr


def test_celery_worker_and_beat_handlers_get_the_same_redaction() -> None:
    """Celery replaces the root logger's handlers in the worker and beat; celery_app.py hands them our filter."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    from alma_billing.log_privacy import handlers_redact

    assert handlers_redact in [receiver for _, receiver in after_setup_logger.receivers]
    assert handlers_redact in [receiver for _, receiver in after_setup_task_logger.receivers]
    logger, handler = logging.getLogger("test.celery.handlers"), logging.StreamHandler()
    logger.addHandler(handler)
    try:
        handlers_redact(logger)
        handlers_redact(logger)
        assert [type(f) for f in handler.filters] == [RedactPathsFilter]
    finally:
        logger.removeHandler(handler)
