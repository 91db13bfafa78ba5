"""Twilio Verify gateway driven through the real twilio SDK, with a local Verify emulator as its HTTP transport."""

import base64
import io
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from twilio.http.http_client import TwilioHttpClient

from verification.gateways import UNAVAILABLE, CheckResult, SendLimitReached, VerifyError
from verification.gateways.twilio import TwilioVerifyGateway

# Test values that do not look like real credentials (a real account SID is AC + 32 hex digits).
ACCOUNT_SID = "ACtest" + "x" * 26
AUTH_TOKEN = "test-token"
SERVICE_SID = "VAtest" + "x" * 26
PHONE = "+12025550143"

VERIFY_PATH = re.compile(r"^/v2/Services/(?P<service_sid>[^/]+)/(?P<resource>Verifications|VerificationCheck)$")


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass
class SeenRequest:
    method: str
    url: str
    body: str
    form: dict[str, list[str]]
    headers: dict[str, str]
    timeout: Any


class VerifyEmulator(BaseAdapter):
    """Plays Twilio Verify: one pending code per number, 5 checks per code, 5 sends per window."""

    max_checks = 5
    max_sends = 5

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[SeenRequest] = []
        self.pending: dict[str, str] = {}  # number -> code waiting to be checked
        self.checks: dict[str, int] = {}  # number -> checks against the pending code
        self.sends: dict[str, int] = {}  # number -> sends in the current window
        self.scripted: list[tuple[int, dict[str, Any]]] = []
        self.failure: Exception | None = None
        self.next_code = 123456

    def code_for(self, phone: str) -> str:
        return self.pending[phone]

    def script(self, status: int, body: dict[str, Any]) -> None:
        self.scripted.append((status, body))

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        self.seen.append(
            SeenRequest(
                method=request.method or "",
                url=request.url or "",
                body=body,
                form=parse_qs(body),
                headers={k: str(v) for k, v in request.headers.items()},
                timeout=timeout,
            )
        )
        if self.failure is not None:
            raise self.failure
        if self.scripted:
            status, payload = self.scripted.pop(0)
            return self._response(request, status, payload)
        status, payload = self._emulate(request, parse_qs(body))
        return self._response(request, status, payload)

    def close(self) -> None:
        pass

    def _emulate(self, request: requests.PreparedRequest, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        url = urlsplit(request.url or "")
        match = VERIFY_PATH.match(url.path)
        if url.hostname != "verify.twilio.com" or request.method != "POST" or not match:
            return 404, twilio_error(404, 20404, f"The requested resource {url.path} was not found")
        expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected_auth:
            return 401, twilio_error(401, 20003, "Authenticate")
        phone = form.get("To", [""])[0]
        if match["resource"] == "Verifications":
            return self._create_verification(match["service_sid"], phone, form.get("Channel", [""])[0])
        return self._check(match["service_sid"], phone, form.get("Code", [""])[0], url.path)

    def _create_verification(self, service_sid: str, phone: str, channel: str) -> tuple[int, dict[str, Any]]:
        if self.sends.get(phone, 0) >= self.max_sends:
            return 429, twilio_error(429, 60203, "Max send attempts reached")
        self.sends[phone] = self.sends.get(phone, 0) + 1
        if phone not in self.pending:  # Twilio resends the same code while one is pending
            self.pending[phone] = str(self.next_code)
            self.checks[phone] = 0
            self.next_code += 1
        return 201, {
            "sid": "VEtest" + "x" * 26,
            "service_sid": service_sid,
            "account_sid": ACCOUNT_SID,
            "to": phone,
            "channel": channel,
            "status": "pending",
            "valid": False,
            "date_created": "2025-01-01T12:00:00Z",
            "date_updated": "2025-01-01T12:00:00Z",
            "send_code_attempts": [{"channel": channel}] * self.sends[phone],
        }

    def _check(self, service_sid: str, phone: str, code: str, path: str) -> tuple[int, dict[str, Any]]:
        if phone not in self.pending:
            return 404, twilio_error(404, 20404, f"The requested resource {path} was not found")
        if self.checks[phone] >= self.max_checks:
            return 429, twilio_error(429, 60202, "Max check attempts reached")
        self.checks[phone] += 1
        approved = code == self.pending[phone]
        if approved:
            del self.pending[phone]
        return 200, {
            "sid": "VEtest" + "x" * 26,
            "service_sid": service_sid,
            "account_sid": ACCOUNT_SID,
            "to": phone,
            "channel": "sms",
            "status": "approved" if approved else "pending",
            "valid": approved,
        }

    @staticmethod
    def _response(request: requests.PreparedRequest, status: int, payload: dict[str, Any]) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.raw = io.BytesIO(json.dumps(payload).encode())
        response.headers["Content-Type"] = "application/json"
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response


@pytest.fixture
def emulator() -> VerifyEmulator:
    return VerifyEmulator()


@pytest.fixture
def gateway(emulator: VerifyEmulator) -> TwilioVerifyGateway:
    http_client = TwilioHttpClient(timeout=5)
    assert http_client.session is not None
    http_client.session.mount("https://", emulator)
    return TwilioVerifyGateway(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, service_sid=SERVICE_SID, http_client=http_client
    )


def test_send_code_posts_the_number_to_the_verify_service_with_account_auth_and_a_timeout(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    gateway.send_code(phone_e164=PHONE)

    [sent] = emulator.seen
    url = urlsplit(sent.url)
    assert sent.method == "POST"
    assert (url.scheme, url.hostname, url.path) == (
        "https",
        "verify.twilio.com",
        f"/v2/Services/{SERVICE_SID}/Verifications",
    )
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "To=%2B12025550143" in sent.body.split("&")
    assert sent.form == {"To": [PHONE], "Channel": ["sms"]}
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert sent.timeout is not None
    assert emulator.code_for(PHONE)  # a code is now waiting for the patient


def test_gateway_without_an_injected_client_still_sets_a_timeout(emulator: VerifyEmulator) -> None:
    gateway = TwilioVerifyGateway(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, service_sid=SERVICE_SID)
    gateway.client.http_client.session.mount("https://", emulator)

    gateway.send_code(phone_e164=PHONE)

    assert emulator.seen[0].timeout == 8.0  # TWILIO_TIMEOUT_SECONDS (16) over a try and one retry


def test_gateway_timeout_is_cut_to_what_is_left_of_the_request_budget(emulator: VerifyEmulator) -> None:
    from alma_billing.core.budget import outside_call_budget

    with outside_call_budget(3.0):
        gateway = TwilioVerifyGateway(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, service_sid=SERVICE_SID)
    gateway.client.http_client.session.mount("https://", emulator)

    gateway.send_code(phone_e164=PHONE)

    assert emulator.seen[0].timeout <= 1.5  # both tries together stay inside the 3 s left


def test_right_code_is_approved(gateway: TwilioVerifyGateway, emulator: VerifyEmulator) -> None:
    gateway.send_code(phone_e164=PHONE)
    code = emulator.code_for(PHONE)

    result = gateway.check_code(phone_e164=PHONE, code=code)

    assert result is CheckResult.APPROVED
    checked = emulator.seen[-1]
    assert urlsplit(checked.url).path == f"/v2/Services/{SERVICE_SID}/VerificationCheck"
    assert checked.form == {"To": [PHONE], "Code": [code]}


def test_wrong_code_is_reported_as_wrong_and_the_right_code_still_works(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    gateway.send_code(phone_e164=PHONE)
    right_code = emulator.code_for(PHONE)

    assert gateway.check_code(phone_e164=PHONE, code="000000") is CheckResult.WRONG_CODE
    assert gateway.check_code(phone_e164=PHONE, code=right_code) is CheckResult.APPROVED


def test_code_already_used_is_expired(gateway: TwilioVerifyGateway, emulator: VerifyEmulator) -> None:
    gateway.send_code(phone_e164=PHONE)
    code = emulator.code_for(PHONE)
    assert gateway.check_code(phone_e164=PHONE, code=code) is CheckResult.APPROVED

    assert gateway.check_code(phone_e164=PHONE, code=code) is CheckResult.EXPIRED


def test_code_never_sent_is_expired(gateway: TwilioVerifyGateway) -> None:
    assert gateway.check_code(phone_e164=PHONE, code="123456") is CheckResult.EXPIRED


def test_sixth_check_is_too_many_checks_even_with_the_right_code(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    gateway.send_code(phone_e164=PHONE)
    right_code = emulator.code_for(PHONE)
    for _ in range(5):
        assert gateway.check_code(phone_e164=PHONE, code="000000") is CheckResult.WRONG_CODE

    assert gateway.check_code(phone_e164=PHONE, code=right_code) is CheckResult.TOO_MANY_CHECKS


def test_sixth_send_in_the_window_tells_the_patient_to_wait(gateway: TwilioVerifyGateway) -> None:
    for _ in range(5):
        gateway.send_code(phone_e164=PHONE)

    with pytest.raises(SendLimitReached) as caught:
        gateway.send_code(phone_e164=PHONE)

    assert caught.value.permanent is True
    assert "wait 10 minutes" in caught.value.message


def server_error(emulator: VerifyEmulator) -> None:
    emulator.script(500, twilio_error(500, 20500, "An internal server error has occurred"))


def connection_error(emulator: VerifyEmulator) -> None:
    emulator.failure = requests.exceptions.ConnectionError(f"Connection refused while verifying {PHONE}")


def send(gateway: TwilioVerifyGateway) -> None:
    gateway.send_code(phone_e164=PHONE)


def check(gateway: TwilioVerifyGateway) -> None:
    gateway.check_code(phone_e164=PHONE, code="123456")


@pytest.mark.parametrize("action", [send, check])
@pytest.mark.parametrize("outage", [server_error, connection_error])
def test_twilio_outage_is_temporary_and_asks_the_patient_to_try_again(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator, outage: Any, action: Any
) -> None:
    outage(emulator)

    with pytest.raises(VerifyError) as caught:
        action(gateway)

    assert caught.value.permanent is False
    assert caught.value.message == UNAVAILABLE
    assert "try again" in caught.value.message


def test_invalid_number_is_permanent_and_points_the_patient_to_their_provider(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    emulator.script(400, twilio_error(400, 60200, f"Invalid parameter `To`: {PHONE}"))

    with pytest.raises(VerifyError) as caught:
        gateway.send_code(phone_e164=PHONE)

    assert caught.value.permanent is True
    assert "contact your provider" in caught.value.message


RAW_TWILIO_FAILURES = {
    "server error": (500, twilio_error(500, 20500, f"An internal server error has occurred for {ACCOUNT_SID}")),
    "invalid parameter": (400, twilio_error(400, 60200, f"Invalid parameter `To`: {PHONE}")),
    "send limit": (429, twilio_error(429, 60203, f"Max send attempts reached for {PHONE}")),
    "rate limited": (429, twilio_error(429, 20429, f"Too many requests from account {ACCOUNT_SID}")),
    "bad auth": (401, twilio_error(401, 20003, f"Authentication Error - invalid username {ACCOUNT_SID}")),
}


@pytest.mark.parametrize("failure", RAW_TWILIO_FAILURES.values(), ids=RAW_TWILIO_FAILURES.keys())
def test_patient_message_never_shows_the_number_the_account_or_twilio_wording(
    gateway: TwilioVerifyGateway,
    emulator: VerifyEmulator,
    caplog: pytest.LogCaptureFixture,
    failure: tuple[int, dict[str, Any]],
) -> None:
    status, payload = failure
    emulator.script(status, payload)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(VerifyError) as caught:
        gateway.send_code(phone_e164=PHONE)

    shown = [caught.value.message, str(caught.value)]
    for text in shown:
        assert PHONE not in text
        assert PHONE.lstrip("+") not in text
        assert ACCOUNT_SID not in text
        assert payload["message"] not in text
        assert "twilio" not in text.lower()
    assert PHONE.lstrip("+") not in caplog.text  # logs carry ids, not phone numbers


def test_connection_error_message_does_not_leak_the_exception_text(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    connection_error(emulator)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(VerifyError) as caught:
        gateway.check_code(phone_e164=PHONE, code="123456")

    assert PHONE not in caught.value.message
    assert "Connection refused" not in caught.value.message
    assert PHONE.lstrip("+") not in caplog.text


def test_errors_in_the_newer_problem_format_are_mapped_the_same(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    """twilio 9 raises TwilioServiceException (not TwilioRestException) for RFC 9457 bodies."""
    problem = {"type": "https://www.twilio.com/docs/errors/20404", "title": "Not found", "status": 404, "code": 20404}
    emulator.script(404, problem)
    assert gateway.check_code(phone_e164=PHONE, code="123456") == CheckResult.EXPIRED
    emulator.script(429, {**problem, "status": 429, "code": 60203, "title": "Max send attempts reached"})
    with pytest.raises(SendLimitReached):
        gateway.send_code(phone_e164=PHONE)


def test_a_spanish_page_asks_twilio_verify_for_a_spanish_sms(
    gateway: TwilioVerifyGateway, emulator: VerifyEmulator
) -> None:
    gateway.send_code(phone_e164=PHONE, locale="es")

    [sent] = emulator.seen
    assert sent.form == {"To": [PHONE], "Channel": ["sms"], "Locale": ["es"]}
    assert emulator.code_for(PHONE)
