"""HTTP helpers for patient pages: security headers and the client address."""

import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise

View = Callable[..., HttpResponse]


def _origin(url: str) -> str:
    return "/".join(url.split("/")[:3])


def content_security_policy() -> str:
    """Our own assets, plus Stripe.js and the hosts it talks to (localstripe in development and tests)."""
    stripe_js = _origin(settings.STRIPE_JS_URL)
    scripts = f"'self' {stripe_js}"
    frames = f"'self' {stripe_js} https://hooks.stripe.com"
    connect = " ".join(["'self'", *sorted({stripe_js, _origin(settings.STRIPE_API_BASE)})])
    return (
        f"default-src 'self'; script-src {scripts}; frame-src {frames}; connect-src {connect}; "
        "style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; object-src 'none'; "
        "frame-ancestors 'none'"
    )


def patient_page(view: View) -> View:
    """Patient pages are never cached, never framed, and never send their URL (with the token) to another site."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        response["Content-Security-Policy"] = content_security_policy()
        response["Referrer-Policy"] = "same-origin"
        response["X-Frame-Options"] = "DENY"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapped


def _bare_ip(entry: str) -> str | None:
    """An address as PostgreSQL's inet and Django's GenericIPAddressField take it, from a bare IP or an IP with a
    port ("1.2.3.4:5678", "[::1]:80"); None for anything else ("unknown", garbage, an IPv6 zone)."""
    text = entry.strip()
    if not text or len(text) > 64 or "%" in text:
        return None
    if text.startswith("["):
        text = text[1:].partition("]")[0]  # "[::1]:80" -> "::1"
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # "1.2.3.4:5678" -> "1.2.3.4"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, always a valid IP or None, so whatever stores it (attempt limits, the audit trail)
    never fails on it. Behind a proxy set TRUSTED_PROXY_COUNT: X-Forwarded-For is read from the right, as many hops
    as there are trusted proxies; an entry that is not an address falls back to REMOTE_ADDR."""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        header = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))[-4096:]  # the right end is what proxies wrote
        forwarded = [part.strip() for part in header.split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = _bare_ip(forwarded[-hops])
            if address is not None:
                return address
    return _bare_ip(str(request.META.get("REMOTE_ADDR") or ""))


def contains_nul(value: Any) -> bool:
    """Whether parsed JSON holds text PostgreSQL cannot store anywhere: a NUL character, or a lone surrogate
    (JSON's "\\ud800" escape), which is not UTF-8 at all."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


def message_page(request: HttpRequest, heading: str | Promise, message: str | Promise, *, status: int) -> HttpResponse:
    """A patient page that only says what happened and what to do next (unknown link, ended session, not found)."""
    return render(request, "verification/link_problem.html", {"heading": heading, "message": message}, status=status)
