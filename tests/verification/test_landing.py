"""The pay-link landing page (every email click) reads its link and the patient's lock in one SQL statement and
writes nothing (issue 14): a fresh link in a fresh browser is one statement, and the statement reads what the ORM
reads (verification.services.pay_link_open against pay_link_find and patient_locked)."""

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from invoices.models import Invoice
from tests.factories import InvoiceFactory
from verification.models import AccessAttempt, PayLink
from verification.services import (
    OpenedLink,
    pay_link_create,
    pay_link_find,
    pay_link_open,
    pay_link_open_from_orm,
)

pytestmark = pytest.mark.django_db

WRONG = "(617) 555-0100"


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(amount_cents=12_345, session__patient__phone="+12025550143")


def _fields(link: PayLink) -> dict[str, object]:
    return {field.attname: getattr(link, field.attname) for field in PayLink._meta.concrete_fields}


def test_a_fresh_link_in_a_fresh_browser_is_one_statement_and_no_session(invoice: Invoice) -> None:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    client = Client()

    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/pay/{token}/")

    statements = [q["sql"] for q in captured.captured_queries]
    assert response.status_code == 200 and ">Continue</button>" in response.content.decode()
    assert len(statements) == 1, statements
    assert "django_session" not in statements[0]
    assert "sessionid" not in response.cookies  # nothing stored for a visit that only shows the form
    assert "csrftoken" in response.cookies  # the phone form still carries its CSRF protection


@pytest.mark.parametrize("opener", [pay_link_open, pay_link_open_from_orm])
def test_the_landing_read_is_the_link_as_the_orm_reads_it_with_its_recent_failures(
    opener: Callable[[str], OpenedLink | None], invoice: Invoice
) -> None:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)

    opened = opener(token)

    assert opened is not None and not opened.failed_recently
    assert _fields(opened.link) == _fields(pay_link_find(token))  # type: ignore[arg-type]
    assert opener("x" * 43) is None and opener("short") is None

    Client().post(f"/pay/{token}/", {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")
    assert opener(token).failed_recently  # type: ignore[union-attr]

    # A failure older than the lockout window no longer counts, as in patient_locked.
    AccessAttempt.objects.update(created_at=timezone.now() - timedelta(hours=2))
    assert not opener(token).failed_recently  # type: ignore[union-attr]


def test_another_patients_failures_do_not_mark_this_link(invoice: Invoice) -> None:
    other = InvoiceFactory(session__patient__phone="+12025550199")
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    Client().post(f"/pay/{pay_link_create(patient=other.patient)[1]}/", {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")

    assert not pay_link_open(token).failed_recently  # type: ignore[union-attr]
    assert not pay_link_open_from_orm(token).failed_recently  # type: ignore[union-attr]


def _without_csrf_token(page: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value="…"', page)


@pytest.mark.parametrize("browser_language", ["en", "es"])
def test_the_landing_page_is_byte_for_byte_what_the_full_render_gives(
    settings: Any, invoice: Invoice, browser_language: str
) -> None:
    """The phone form of a GET is rendered once per language with markers for the CSRF token and the page's path
    (verification.views._phone_page); with DEBUG every request runs the template. Both must give the same page."""
    settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE = "billing-help@alma.example", "(800) 555-0100"
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    url = f"/pay/{token}/?from=email&x=<b>"  # a query string, with what must be escaped in the `next` field
    headers = {"accept-language": browser_language}

    fast = [Client().get(url, headers=headers) for _ in range(2)]  # the first renders and keeps the page
    settings.DEBUG = True
    full = Client().get(url, headers=headers)

    expected = _without_csrf_token(full.content.decode())
    assert f'<html lang="{browser_language}">' in expected and "billing-help@alma.example" in expected
    for response in fast:
        page = response.content.decode()
        assert _without_csrf_token(page) == expected
        assert response.status_code == full.status_code == 200
        for header in ("Content-Type", "Vary", "Cache-Control", "Content-Security-Policy", "Content-Language"):
            assert response.get(header) == full.get(header), header
        assert set(response.cookies) == set(full.cookies) == {"csrftoken"}
    tokens = [re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.content.decode()) for r in fast]
    assert tokens[0] and tokens[1] and tokens[0].group(1) != tokens[1].group(1)  # each request its own token


def test_the_phone_form_of_the_prerendered_page_posts_with_its_csrf_token(invoice: Invoice) -> None:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    client = Client(enforce_csrf_checks=True)
    page = client.get(f"/pay/{token}/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert csrf is not None

    response = client.post(f"/pay/{token}/", {"phone": "(202) 555-0143", "csrfmiddlewaretoken": csrf.group(1)})

    assert response.status_code == 302 and response["Location"] == "/pay/code/"
