"""Patients see our own pages for 400, 403, 404, 500 and a failed CSRF check: what happened, what to do next, and
the support contact when SUPPORT_EMAIL / SUPPORT_PHONE are set. Never Django's bare pages, never cached."""

import re
from typing import TYPE_CHECKING

import pytest
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from alma_billing.urls import urlpatterns as site_urls

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse  # what the test Client answers

pytestmark = pytest.mark.django_db


def _bad_request(request: HttpRequest) -> HttpResponse:
    raise BadRequest("unreadable")


def _denied(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def _broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


# The site's own urls (and so its handler400..500), plus three views that fail on purpose.
urlpatterns = [
    path("test-errors/400/", _bad_request),
    path("test-errors/403/", _denied),
    path("test-errors/500/", _broken),
    *site_urls,
]
handler400 = "alma_billing.core.error_pages.bad_request"
handler403 = "alma_billing.core.error_pages.permission_denied"
handler404 = "alma_billing.core.error_pages.page_not_found"
handler500 = "alma_billing.core.error_pages.server_error"

SUPPORT = {"SUPPORT_EMAIL": "help@alma.example", "SUPPORT_PHONE": "(800) 555-0199"}


def text(response: "TestResponse") -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def assert_patient_page(response: "TestResponse", status: int, heading: str, *next_steps: str) -> str:
    page = text(response)
    assert response.status_code == status
    assert f"<h1>{heading}</h1>" in page
    for words in next_steps:
        assert words in page, words
    assert 'class="brand">Alma' in page and "css/site.css" in page  # the patient base template
    assert response["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in response["Content-Security-Policy"]
    return page


@override_settings(DEBUG=False, ROOT_URLCONF=__name__, **SUPPORT)
def test_400_says_to_go_back_and_try_again() -> None:
    page = assert_patient_page(
        Client().get("/test-errors/400/"), 400, "We couldn't read that request", "reload the page and try again"
    )
    assert 'href="mailto:help@alma.example"' in page and 'href="tel:8005550199"' in page


@override_settings(DEBUG=False, ROOT_URLCONF=__name__, **SUPPORT)
def test_403_points_to_the_latest_email() -> None:
    assert_patient_page(
        Client().get("/test-errors/403/"),
        403,
        "You can't open this page",
        "open the link in your most recent email from Alma again",
        "help@alma.example",
    )


@override_settings(DEBUG=False, **SUPPORT)
def test_404_is_ours() -> None:
    assert_patient_page(
        Client().get("/no-such-page/"),
        404,
        "We couldn't find that page",
        "open the link in your most recent email from Alma again",
        "(800) 555-0199",
    )


@override_settings(DEBUG=False, ROOT_URLCONF=__name__, **SUPPORT)
def test_500_does_not_claim_nothing_was_charged() -> None:
    client = Client(raise_request_exception=False)
    page = assert_patient_page(
        client.get("/test-errors/500/"),
        500,
        "Something went wrong on our side",
        "try again in a few minutes",
        "check your email for a receipt before you try again",
        "help@alma.example",
    )
    assert "nothing was charged" not in page.lower() and "boom" not in page


@override_settings(DEBUG=False, SUPPORT_EMAIL="", SUPPORT_PHONE="")
def test_without_a_support_contact_the_pages_send_patients_to_their_provider() -> None:
    page = text(Client().get("/no-such-page/"))
    assert "Contact your provider" in page and "mailto:" not in page and "tel:" not in page


@override_settings(DEBUG=False, **SUPPORT)
def test_a_failed_csrf_check_says_the_page_expired(patient_link: str) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.get(patient_link).status_code == 200  # sets the CSRF cookie
    response = client.post(patient_link, {"phone": "(202) 555-0143", "csrfmiddlewaretoken": "expired" * 8})
    page = assert_patient_page(
        response, 403, "This page expired", "Go back, reload the page and try again.", "help@alma.example"
    )
    assert "cookies" not in page  # the cookie was there: only the token was stale


@override_settings(DEBUG=False)
def test_a_csrf_failure_without_the_cookie_mentions_cookies(patient_link: str) -> None:
    response = Client(enforce_csrf_checks=True).post(patient_link, {"phone": "(202) 555-0143"})
    assert_patient_page(response, 403, "This page expired", "allows cookies for this site")


@pytest.fixture
def patient_link() -> str:
    from tests.factories import InvoiceFactory
    from tests.verification.helpers import link_for

    return link_for(InvoiceFactory())
