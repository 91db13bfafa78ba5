"""Optional error tracking (Sentry, for Django and Celery) that sends the error and never the patient's data.

`sentry_init` is called by settings when SENTRY_DSN is set. The SDK is told not to collect personal data, request
bodies or local variables, and `scrub_event` runs on every event before it leaves: it keeps the request's method
and its path (redacted as in our logs: no pay-link token, no query string), the exception's type and stack (file,
function, line), the request or task id; it drops bodies, cookies, query strings, headers other than a few safe
ones, the user, Celery task arguments and breadcrumb data, and masks emails, phone numbers and amounts in what text
is left (exception messages, log messages). Nothing here imports Django models: settings imports it.
"""

import re
import warnings
from typing import Any

from alma_billing.log_privacy import current_request_id, redact

AMOUNT_PLACEHOLDER = "[amount]"
# "$12.34", "$1,234", "12.34 USD", "1234 cents", "amount_cents=1234"
_AMOUNT = re.compile(
    r"\$\s?\d[\d,]*(?:\.\d{1,2})?|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|usd|cents)\b|(?<=_cents=)\d+|(?<=_cents': )\d+"
)
# Headers that say nothing about the patient; everything else (Cookie, Authorization, Referer with a pay link,
# X-Forwarded-For, Stripe-Signature, ...) is dropped.
SAFE_HEADERS = frozenset({"user-agent", "content-type", "content-length", "accept", "x-request-id", "host"})
# Event keys that can hold anything: dropped whole.
_DROPPED = ("user", "extra", "modules")


def scrub_text(text: str) -> str:
    """Emails, phone numbers, pay-link tokens and query strings (log_privacy.redact), and amounts, masked."""
    return _AMOUNT.sub(AMOUNT_PLACEHOLDER, redact(text))


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    if isinstance(request.get("method"), str):
        kept["method"] = request["method"]
    if isinstance(request.get("url"), str):
        kept["url"] = scrub_text(request["url"].split("?", 1)[0])
    headers = request.get("headers")
    if isinstance(headers, dict):
        kept["headers"] = {k: scrub_text(str(v)) for k, v in headers.items() if str(k).lower() in SAFE_HEADERS}
    return kept  # no data, cookies, query_string, env


def _scrub_frames(stacktrace: Any) -> None:
    if not isinstance(stacktrace, dict):
        return
    for frame in stacktrace.get("frames") or []:
        if isinstance(frame, dict):
            frame.pop("vars", None)  # local variables: the patient, the invoice, the request
            for key in ("context_line", "pre_context", "post_context"):
                frame.pop(key, None)  # source lines are fine, but a literal in one could be anything


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: what may leave for Sentry (see the module docstring). Never raises: a scrubber that failed
    would let the SDK send the unscrubbed event, so on any surprise it sends a bare one instead."""
    try:
        return _scrub(event)
    except Exception:  # pragma: no cover - defensive
        return {"level": "error", "message": "An error occurred; its report could not be scrubbed and was dropped."}


def _scrub(event: dict[str, Any]) -> dict[str, Any]:
    for key in _DROPPED:
        event.pop(key, None)
    if isinstance(event.get("request"), dict):
        event["request"] = _scrub_request(event["request"])
    for value in (event.get("exception") or {}).get("values") or []:
        if isinstance(value, dict):
            if isinstance(value.get("value"), str):
                value["value"] = scrub_text(value["value"])
            _scrub_frames(value.get("stacktrace"))
    for thread in (event.get("threads") or {}).get("values") or []:
        if isinstance(thread, dict):
            _scrub_frames(thread.get("stacktrace"))
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        message = logentry.get("formatted") or logentry.get("message") or ""
        event["logentry"] = {"message": scrub_text(str(message))}
    for key in ("message", "transaction"):
        if isinstance(event.get(key), str):
            event[key] = scrub_text(event[key])
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    if isinstance(values, list):
        for crumb in values:
            if isinstance(crumb, dict):
                crumb.pop("data", None)  # e.g. an HTTP call's URL and query, a SQL statement's parameters
                if isinstance(crumb.get("message"), str):
                    crumb["message"] = scrub_text(crumb["message"])
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        # Keep the runtime and OS; drop anything an integration added about the work itself.
        event["contexts"] = {k: v for k, v in contexts.items() if k in ("runtime", "os", "trace", "device")}
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        request_id = current_request_id.get()
        if request_id:
            tags["request_id"] = request_id
    return event


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any] | None:
    crumb.pop("data", None)
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    return crumb


def sentry_init(
    *,
    dsn: str,
    environment: str = "production",
    release: str | None = None,
    traces_sample_rate: float = 0.0,
    transport: Any = None,
) -> None:
    """Start the SDK for Django and Celery with every patient-data collection off and the scrubber on."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "release": release,
        "integrations": [DjangoIntegration(), CeleryIntegration()],
        "send_default_pii": False,
        # The same, in the SDK's newer structured form (it takes precedence where the SDK knows it).
        "data_collection": {
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(SAFE_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
            "frame_context_lines": 0,
            "gen_ai": {"inputs": False, "outputs": False},
            "graphql": {"document": False, "variables": False},
        },
        "max_request_body_size": "never",
        "include_local_variables": False,
        "include_source_context": False,
        "before_send": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        "traces_sample_rate": traces_sample_rate,
        "before_send_transaction": scrub_event,
    }
    if transport is not None:
        options["transport"] = transport
    with warnings.catch_warnings():
        # send_default_pii=False is kept on purpose (it is what older SDKs and reviewers read); newer SDKs say
        # data_collection supersedes it, which is also set.
        warnings.filterwarnings("ignore", message=r".*send_default_pii", category=DeprecationWarning)
        sentry_sdk.init(**options)
