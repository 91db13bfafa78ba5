"""Logs carry ids, never patient data: the LOGGING configuration, path redaction, and the SDKs kept quiet.

Used by settings (LOGGING), by gunicorn's access log (alma_billing.gunicorn_logging) and by the tests. Nothing here
imports Django, so gunicorn's master process can load it before the application.

- Third-party loggers that write request and response bodies, URLs or SQL with their parameters (the Stripe and
  Twilio SDKs, urllib3, requests, Django's SQL logger, ...) are pinned at WARNING whatever LOG_LEVEL says.
- Request paths are redacted wherever they are logged: a pay link's token (`/pay/<token>/`) becomes `[token]` and
  query strings are dropped, in Django's `django.request`, `django.server` and `django.security.*` records as in
  gunicorn's access log.
"""

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Loggers pinned at this level or higher regardless of LOG_LEVEL: at DEBUG and INFO they write what patients typed
# or what Stripe and Twilio answered (emails, phone numbers, amounts, card brand and last 4, URLs with tokens).
PINNED_LEVEL = "WARNING"
PINNED_LOGGERS = (
    "stripe",  # DEBUG: request and response bodies (customer email, amount, card brand and last 4)
    "twilio",  # twilio.http_client at INFO: URL, query parameters and headers of every request (the phone number)
    "urllib3",  # DEBUG: every request line with its query string
    "requests",
    "httpx",
    "httpcore",
    "aiohttp",
    "django.db.backends",  # DEBUG (with DEBUG on): every SQL statement with its parameters
    "django.template",  # DEBUG: variables that failed to resolve, with their context
    "django.utils.autoreload",
    "kombu",  # DEBUG: broker traffic
    "amqp",
    "redis",
    "celery.concurrency",  # DEBUG: each task's call with its arguments and headers
    # Not pinned: celery.worker.strategy and celery.app.trace ("Task x[id] received / succeeded: <return value>")
    # are what ops and the integration tests read; our tasks take ids and return ids, counts or statuses only.
    "environ",  # DEBUG: every environment variable read, with its value (secrets)
    "phonenumbers",
    "fpdf",
    "PIL",
    "faker",
    "factory",
    "asyncio",
)

# Django loggers whose records carry the request path: a redacting filter is attached to each of them, so every
# handler (not only ours) sees the redacted record. Our console handler redacts whatever else reaches it.
PATH_LOGGERS = (
    "django.request",
    "django.server",
    "django.security",
    "django.security.csrf",
    "django.security.DisallowedHost",
    "django.security.SuspiciousOperation",
    "django.security.SuspiciousSession",
    "django.security.SuspiciousFileOperation",
    "django.security.RequestDataTooBig",
    "django.security.TooManyFieldsSent",
    "django.security.TooManyFilesSent",
)

# Fixed words under /pay/ (urls.py); any other first segment there is a pay-link token.
PAY_FIXED_SEGMENTS = frozenset({"code", "invoices", "checkout", "card", "payments", "autopay", "sign-out", "receipts"})
TOKEN_PLACEHOLDER = "[token]"
QUERY_PLACEHOLDER = "?[query]"

# /pay/<segment> (with or without scheme and host, e.g. in a Referer header).
_PAY_SEGMENT = re.compile(r"(/pay/)([^/?#\s\"']+)")
# Any long URL-safe run inside a path is a bearer secret (pay-link tokens are 43 characters; ids are far shorter).
_LONG_SECRET = re.compile(r"(?<=/)[A-Za-z0-9_-]{24,}(?=[/?#\s\"']|$)")
# A query string after a path, up to the end of the URL (space, quote) or of the text.
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']+")


# Defense in depth for text we do not write ourselves (exception messages in tracebacks, e.g. PostgreSQL's
# "DETAIL: Key (email)=(...)"): email addresses and E.164 phone numbers are masked wherever they appear.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_E164 = re.compile(r"\+[1-9]\d{7,14}\b")
EMAIL_PLACEHOLDER, PHONE_PLACEHOLDER = "[email]", "[phone]"


def _pay_segment(match: re.Match[str]) -> str:
    segment = match.group(2)
    return match.group(0) if segment in PAY_FIXED_SEGMENTS else f"{match.group(1)}{TOKEN_PLACEHOLDER}"


def redact(text: str) -> str:
    """`/pay/<token>/` -> `/pay/[token]/`, long URL-safe path segments -> `[token]`, query strings -> `?[query]`;
    email addresses -> `[email]`, E.164 phone numbers -> `[phone]`."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL_PLACEHOLDER, text)
    if "+" in text:
        text = _E164.sub(PHONE_PLACEHOLDER, text)
    if "/" not in text:
        return text
    text = _PAY_SEGMENT.sub(_pay_segment, text)
    text = _LONG_SECRET.sub(TOKEN_PLACEHOLDER, text)
    return _QUERY.sub(lambda match: f"{match.group(1)}{QUERY_PLACEHOLDER}", text)


class RedactPathsFilter(logging.Filter):
    """Rewrites a record's message and traceback with `redact()` (formatting its arguments first); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is reported by the handler as usual
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set: a Resolver404 or a failed request names the path.
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


def handlers_redact(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery's worker and beat replace the root logger's handlers with their own (worker_hijack_root_logger):
    give those handlers the same redaction as our console handler (connected in celery_app.py)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactPathsFilter) for f in handler.filters):
            handler.addFilter(RedactPathsFilter())


def sdk_console_logging_off() -> None:
    """The Stripe SDK prints request and response bodies straight to stderr (bypassing logging) when STRIPE_LOG or
    `stripe.log` is "debug" or "info". Turn that off, whether or not `stripe` is imported yet."""
    os.environ.pop("STRIPE_LOG", None)
    stripe_util = sys.modules.get("stripe._util")
    if stripe_util is not None:
        stripe_util.STRIPE_LOG = None  # type: ignore[attr-defined]
    stripe_module = sys.modules.get("stripe")
    if stripe_module is not None:
        stripe_module.log = None  # type: ignore[attr-defined]


# --- Request ids and JSON lines (issue 15; docs/logs-and-errors.md) ---
# The id of the request being served (alma_billing.core.request_id sets it), put on every record of that request.
current_request_id: ContextVar[str | None] = ContextVar("alma_request_id", default=None)
LOG_FORMATS = ("plain", "json")


def _current_task_id() -> str | None:
    celery_state = sys.modules.get("celery._state")
    if celery_state is None:
        return None
    task = celery_state.get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    task_id = getattr(request, "id", None)
    return str(task_id) if task_id else None


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the web request being served) and `task_id` (the Celery task running) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get() or "-"
        if not hasattr(record, "task_id"):
            record.task_id = _current_task_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, task_id and the (redacted) traceback.

    The message is what the redacting filter left; nothing else from the record is copied (extra fields could be
    anything a library passed)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        task_id = getattr(record, "task_id", None) or _current_task_id()
        if request_id and request_id != "-":
            line["request_id"] = request_id
        if task_id and task_id != "-":
            line["task_id"] = task_id
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format() -> str:
    value = os.environ.get("LOG_FORMAT", "plain").strip().lower() or "plain"
    return value if value in LOG_FORMATS else "plain"


def handlers_format(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery's worker and beat handlers: request and task ids on every record, and JSON lines with LOG_FORMAT=json
    (connected in celery_app.py, after handlers_redact)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if log_format() == "json":
            handler.setFormatter(JsonFormatter())


def logging_config(level: str, fmt: str = "plain") -> dict[str, Any]:
    """Django's LOGGING: one console handler at `level` that redacts paths, with the chatty SDK loggers pinned.

    `fmt` "json" writes one JSON object per line (JsonFormatter); both formats carry the request id."""
    pinned_level = max(logging.getLevelName(PINNED_LEVEL), _level_number(level))
    loggers: dict[str, dict[str, Any]] = {
        name: {"level": logging.getLevelName(pinned_level)} for name in PINNED_LOGGERS
    }
    for name in PATH_LOGGERS:
        loggers.setdefault(name, {})["filters"] = ["redact_paths"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact_paths": {"()": "alma_billing.log_privacy.RedactPathsFilter"},
            "request_id": {"()": "alma_billing.log_privacy.RequestIdFilter"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "alma_billing.log_privacy.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if fmt == "json" else "plain",
                "filters": ["redact_paths", "request_id"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers,
    }


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO
