"""A time budget for outside calls (Stripe, Twilio) made while serving one web request (SMTP is never called from
a web request when Redis is configured: emails are tasks).

gunicorn kills a sync worker that spends GUNICORN_TIMEOUT seconds on one request, and a killed worker answers
nothing true. So each request gets OUTSIDE_CALL_BUDGET_SECONDS (less than that timeout, leaving room for the
database and rendering) to spend on outside calls in all; each call's timeout is cut to what is left, and a call
that would start with almost nothing left fails at once as "unreachable", which callers already say as "we're
confirming" or "try again" depending on what they know. Outside a request (Celery, commands) only the per-call
timeouts apply.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse

MINIMUM_CALL_SECONDS = 0.5

_deadline: ContextVar[float | None] = ContextVar("outside_call_deadline", default=None)


class BudgetExhausted(Exception):
    """No time left in this request for another outside call."""


@contextmanager
def outside_call_budget(seconds: float) -> Iterator[None]:
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left for outside calls in this request, or None outside a request budget."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def call_timeout(per_call_seconds: float) -> float:
    """The timeout for the next outside call: its own, cut to the request's remaining budget."""
    left = remaining()
    if left is None:
        return per_call_seconds
    if left < MINIMUM_CALL_SECONDS:
        raise BudgetExhausted
    return min(per_call_seconds, left)


def call_retries(per_call_seconds: float, retries: int) -> int:
    """How many network retries still fit in the budget (each try may take the whole call timeout)."""
    left = remaining()
    if left is None:
        return retries
    return max(0, min(retries, int(left // max(per_call_seconds, MINIMUM_CALL_SECONDS)) - 1))


class OutsideCallBudgetMiddleware:
    """Gives every web request its outside-call budget."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with outside_call_budget(settings.OUTSIDE_CALL_BUDGET_SECONDS):
            return self.get_response(request)
