"""A request id on every request: a sane incoming X-Request-ID (from the proxy) or a new one, on the response header
and on every log record written while the request is served (alma_billing.log_privacy.RequestIdFilter)."""

import re
import uuid
from collections.abc import Callable

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from alma_billing.log_privacy import current_request_id

HEADER = "X-Request-ID"
# What a proxy sends (a UUID, a hex or base64url id): letters, digits, dot, dash, underscore, colon; 8 to 64 of
# them. Anything else (a huge value, spaces, quotes, control characters, an email address) is replaced by our own.
_SANE = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def request_id_for(incoming: str | None) -> str:
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE, so even a request refused early carries an id in its logs and its response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.headers.get(HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Kept until the response is closed (request_finished), not only while the middleware runs: Django logs a
        # 4xx/5xx ("Not Found: ...") after the middleware has returned, and gunicorn writes its access line then.
        current_request_id.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _request_id_clear(**kwargs: object) -> None:
    current_request_id.set(None)


request_finished.connect(_request_id_clear, dispatch_uid="alma-request-id-clear")
