"""Patient-styled error pages (400, 403, 404, 500) and the CSRF failure page: what happened, what to do next, and
the platform's support contact (SUPPORT_EMAIL, SUPPORT_PHONE) when set.

Wired in urls.py (handler400..500) and settings (CSRF_FAILURE_VIEW). Like every patient page they are never cached
or framed. The 500 page is rendered without the request's context processors, so it needs neither the database nor
the session (which may be what failed).
"""

import re

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseServerError,
)
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.template import loader

from alma_billing.core.http import patient_page


def _support() -> dict[str, str]:
    phone = settings.SUPPORT_PHONE
    return {
        "support_email": settings.SUPPORT_EMAIL,
        "support_phone": phone,
        "support_phone_link": re.sub(r"[^\d+]", "", phone),
    }


def support_contact(request: HttpRequest) -> dict[str, str]:
    """Context processor: the platform's own contact, in every patient page's footer (a card or page problem)."""
    return _support()


def _render(template: str, request: HttpRequest | None, **context: object) -> str:
    return loader.get_template(template).render({**_support(), **context}, request)


@patient_page
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseBadRequest(_render("400.html", request))


@patient_page
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseForbidden(_render("403.html", request))


@patient_page
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseNotFound(_render("404.html", request))


@patient_page
def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponseServerError(_render("500.html", None))


@patient_page
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """An expired or missing CSRF token: most often a form left open for hours, or a page restored from history."""
    page = _render("errors/csrf_failure.html", request, cookies_missing=reason == REASON_NO_CSRF_COOKIE)
    return HttpResponseForbidden(page)
