"""Health check for load balancers and compose, and the DEBUG-only dev outbox."""

import email
import email.policy
import json
from email.message import EmailMessage

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from alma_billing.core.mail import outbox_dir


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure is a failed check, reported rather than raised
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    # Only the database is needed to serve patients: Redis being down delays emails and charges (the sweeps finish
    # them), so the site stays in rotation and says "degraded".
    if checks["database"] != "ok":
        return JsonResponse({"status": "unavailable", **checks}, status=503)
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", **checks}, status=200)


def _plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def dev_outbox(request: HttpRequest) -> HttpResponse:
    """Every email and SMS sent in development, newest first (DEBUG only)."""
    if not settings.DEBUG:
        raise Http404
    items = []
    files = [*outbox_dir().glob("*.eml"), *outbox_dir().glob("*.sms.json")]
    for path in sorted(files, key=lambda p: p.name, reverse=True)[:100]:
        if path.suffix == ".json":
            sms = json.loads(path.read_text())
            items.append({"kind": "SMS", "to": sms["to"], "subject": "", "when": sms["sent_at"], "body": sms["body"]})
            continue
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        items.append(
            {
                "kind": "Email",
                "to": message["To"],
                "subject": message["Subject"],
                "when": message["Date"],
                "body": _plain_text(message),
            }
        )
    return render(request, "dev/outbox.html", {"items": items, "folder": outbox_dir()})
