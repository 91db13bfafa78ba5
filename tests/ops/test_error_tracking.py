"""Issue 15: errors reach Sentry (Django and Celery) with the error, and without the patient's data.

The SDK's own transport interface captures what would be sent: an envelope per event, as it would leave."""

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from celery import shared_task
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from alma_billing.core.error_tracking import scrub_text, sentry_init

PATIENT_EMAIL = "marisol.quintero@example.org"
PATIENT_PHONE = "+12025550143"
PATIENT_NAME = "Marisol Quintero"
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"


class CapturingTransport(Transport):
    """What the SDK would send, kept in memory (the SDK's documented extension point)."""

    sent: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        CapturingTransport.sent.append(envelope)


def _sent_text() -> str:
    texts = []
    for envelope in CapturingTransport.sent:
        for item in envelope.items:
            texts.append(item.payload.get_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def _events() -> list[dict[str, Any]]:
    events = []
    for envelope in CapturingTransport.sent:
        for item in envelope.items:
            if item.type == "event":
                events.append(json.loads(item.payload.get_bytes()))
    return events


@pytest.fixture
def sentry() -> Iterator[None]:
    CapturingTransport.sent = []
    sentry_init(dsn="https://public@sentry.invalid/1", transport=CapturingTransport, environment="test")
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)  # back to the SDK's non-recording client


class PatientDataError(Exception):
    pass


@csrf_exempt
def exploding_view(request: HttpRequest, token: str) -> HttpResponse:
    patient = {"name": PATIENT_NAME, "email": PATIENT_EMAIL, "phone": PATIENT_PHONE}  # a local: never sent
    body = request.body.decode()
    raise PatientDataError(f"could not bill {patient['email']} ({PATIENT_PHONE}) for $120.00: {body[:10]}")


urlpatterns = [path("pay/<str:token>/explode/", exploding_view)]


@shared_task
def exploding_task(patient_email: str, amount_cents: int) -> None:
    raise PatientDataError(f"reminder to {patient_email} for amount_cents={amount_cents} failed")


def _assert_no_patient_data(text: str) -> None:
    for secret in (PATIENT_EMAIL, PATIENT_PHONE, PATIENT_NAME, "Marisol", "$120.00", "12000", TOKEN, "sessionid"):
        assert secret not in text, f"{secret!r} was sent to Sentry"


def _wsgi_post(url: str, body: bytes, headers: dict[str, str]) -> str:
    """Through Django's real WSGI handler, as gunicorn calls it (the SDK wraps that entry point)."""
    from django.core.wsgi import get_wsgi_application

    path, _, query = url.partition("?")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "203.0.113.9",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "SERVER_PROTOCOL": "HTTP/1.1",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    statuses: list[str] = []
    chunks = get_wsgi_application()(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type]
    b"".join(chunks)
    return statuses[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.ops.test_error_tracking")
def test_a_view_error_reaches_sentry_without_the_patients_data(sentry: None) -> None:
    status = _wsgi_post(
        f"/pay/{TOKEN}/explode/?email={PATIENT_EMAIL}&t={TOKEN}",
        json.dumps({"email": PATIENT_EMAIL, "name": PATIENT_NAME, "phone": PATIENT_PHONE}).encode(),
        {
            "Cookie": "sessionid=sessionid-secret-value; alma_language=es",
            "X-Request-ID": "req-0123456789",
            "Referer": f"https://billing.example/pay/{TOKEN}/",
            "X-Forwarded-For": "198.51.100.23",
            "User-Agent": "Mozilla/5.0 (test)",
        },
    )
    assert status.startswith("500")
    sentry_sdk.flush()
    events = _events()
    assert len(events) == 1
    event = events[0]
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "PatientDataError"  # the error is there...
    assert "could not bill [email] ([phone]) for [amount]" in exception["value"]
    assert any(frame["function"] == "exploding_view" for frame in exception["stacktrace"]["frames"])
    assert event["request"]["method"] == "POST" and "/pay/[token]/explode/" in event["request"]["url"]
    assert event["tags"]["request_id"] == "req-0123456789"  # ...with the id that finds its log lines
    assert "user" not in event and "data" not in event["request"] and "cookies" not in event["request"]
    assert event["request"]["headers"].get("User-Agent") == "Mozilla/5.0 (test)"
    for leaked in ("198.51.100.23", "203.0.113.9", "alma_language", "Referer", "REMOTE_ADDR"):
        assert leaked not in _sent_text()
    _assert_no_patient_data(_sent_text())  # ...and no patient data anywhere in what was sent


@pytest.mark.django_db
def test_a_task_error_reaches_sentry_without_its_arguments(sentry: None) -> None:
    with pytest.raises(PatientDataError):  # eager tasks propagate their errors in the test settings
        exploding_task.apply(args=(PATIENT_EMAIL, 12_000))
    sentry_sdk.flush()
    events = _events()
    assert len(events) == 1
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "PatientDataError"
    assert "reminder to [email] for amount_cents=[amount] failed" in exception["value"]
    assert any(frame["function"] == "exploding_task" for frame in exception["stacktrace"]["frames"])
    _assert_no_patient_data(_sent_text())


def test_without_a_dsn_the_sdk_is_off(settings: Any) -> None:
    assert settings.SENTRY_DSN == ""
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("charge $1,234.56 failed", "charge [amount] failed"),
        ("refund 45.00 USD", "refund [amount]"),
        ("to ana@example.com at +14155550100", "to [email] at [phone]"),
        (f"GET /pay/{TOKEN}/?code=123456", "GET /pay/[token]/?[query]"),
        ("Invoice INV-0000042 for patient #7", "Invoice INV-0000042 for patient #7"),  # ids stay: they are the point
    ],
)
def test_the_scrubber_masks_patient_data_and_keeps_ids(text: str, expected: str) -> None:
    assert scrub_text(text) == expected
