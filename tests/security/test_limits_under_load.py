"""The 5-try limits hold under a burst: 20 concurrent wrong phone numbers or codes against PostgreSQL count at most
5 failures, and no 6th attempt is checked (compared, or sent to the SMS provider)."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from alma_billing.core.models import AuditEvent
from tests.factories import InvoiceFactory, PatientFactory
from tests.verification.helpers import link_for, texted_codes
from verification.gateways.local import LocalVerifyGateway
from verification.models import AccessAttempt

BURST = 20


def _burst(request: Callable[[], int]) -> list[int]:
    """Run `request` in BURST threads released at once; each thread has its own database connection."""
    barrier = threading.Barrier(BURST)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(request())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return statuses


@pytest.mark.django_db(transaction=True)
def test_p4_a_burst_of_wrong_phone_numbers_counts_at_most_five(postgres: None) -> None:
    invoice = InvoiceFactory(session__patient=PatientFactory(phone="+12025550143"))
    url = link_for(invoice)

    statuses = _burst(lambda: Client().post(url, {"phone": "(617) 555-0100"}, REMOTE_ADDR="198.51.100.7").status_code)

    failures = AccessAttempt.objects.filter(patient=invoice.patient, kind=AccessAttempt.Kind.PHONE, succeeded=False)
    assert failures.count() == 5
    # 4 refused with tries left; the 5th locks (said at once, 429); the rest find the patient locked
    assert sorted(statuses) == [400] * 4 + [429] * (BURST - 4)
    assert AuditEvent.objects.filter(action="verification.locked", data__kind="phone").count() == 1


@pytest.mark.django_db(transaction=True)
def test_p4_a_burst_of_wrong_codes_checks_at_most_five(postgres: None, monkeypatch: Any) -> None:
    invoice = InvoiceFactory(session__patient=PatientFactory(phone="+12025550143"))
    first = Client()
    assert first.post(link_for(invoice), {"phone": "(202) 555-0143"}).status_code == 302
    wrong = "000000" if texted_codes()[-1] != "000000" else "111111"
    checked: list[str] = []
    real_check = LocalVerifyGateway.check_code

    def counting_check(self: LocalVerifyGateway, *, phone_e164: str, code: str) -> Any:
        checked.append(code)
        return real_check(self, phone_e164=phone_e164, code=code)

    monkeypatch.setattr(LocalVerifyGateway, "check_code", counting_check)

    def post_code() -> int:
        client = Client()
        client.cookies = first.cookies  # the same pending code, from 20 tabs at once
        return client.post("/pay/code/", {"code": wrong}, REMOTE_ADDR="198.51.100.7").status_code

    statuses = _burst(post_code)

    failures = AccessAttempt.objects.filter(patient=invoice.patient, kind=AccessAttempt.Kind.CODE, succeeded=False)
    assert failures.count() == 5
    assert len(checked) == 5  # no 6th check reached the SMS provider
    assert AuditEvent.objects.filter(action="verification.locked", data__kind="code").count() == 1
    # Each checked code is refused (or, once the limit is reached, answered "locked"); every other request is locked.
    assert set(statuses) <= {400, 429} and statuses.count(429) >= BURST - 5
