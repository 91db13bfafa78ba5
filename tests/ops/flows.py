"""Mailgun tracking events in tests: signed the way Mailgun signs them (HMAC-SHA256 of timestamp + token with the
signing key), built for bounces, complaints and deliveries, and posted to the tracking webhook."""

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from django.test import Client

SIGNING_KEY = "key-test-mailgun-webhook-signing"
URL = "/email/mailgun/tracking/"


def sign(event_data: dict[str, Any], *, key: str = SIGNING_KEY, timestamp: int | None = None) -> dict[str, Any]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25)  # Mailgun's tokens are 50 characters
    signature = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event_data}


def post(payload: Any, *, raw: bytes | None = None, content_type: str = "application/json") -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    return Client().post(URL, data=body, content_type=content_type)


def permanent_failure(recipient: str) -> dict[str, Any]:
    """Mailgun's "failed" event with severity "permanent" (their documented sample, our addresses)."""
    return {
        "event": "failed",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": time.time(),
        "log-level": "error",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": recipient,
        "recipient-domain": recipient.rsplit("@", 1)[-1],
        "envelope": {"sender": "billing@alma.invalid", "transport": "smtp", "targets": recipient},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "delivery-status": {
            "attempt-no": 1,
            "message": "550 5.1.1 The email account that you tried to reach does not exist.",
            "code": 550,
            "description": "",
            "session-seconds": 0.3,
        },
        "message": {
            "headers": {
                "to": recipient,
                "message-id": "20261201192659.13651.20287@alma.invalid",
                "from": "Alma Billing <billing@alma.invalid>",
                "subject": "You have a new invoice from Alma",
            },
            "attachments": [],
            "size": 4011,
        },
        "storage": {"url": "https://storage.example/messages/abc", "key": "abc"},
        "user-variables": {},
        "tags": [],
        "campaigns": [],
    }


def complaint(recipient: str) -> dict[str, Any]:
    return {
        "event": "complained",
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": time.time(),
        "log-level": "warn",
        "recipient": recipient,
        "envelope": {"sending-ip": "198.51.100.7"},
        "flags": {"is-test-mode": False},
        "message": {
            "headers": {
                "to": recipient,
                "message-id": "20261201192659.13651.20288@alma.invalid",
                "from": "Alma Billing <billing@alma.invalid>",
                "subject": "Reminder: you have an open invoice from Alma",
            },
            "attachments": [],
            "size": 3011,
        },
        "campaigns": [],
        "tags": [],
        "user-variables": {},
    }


def temporary_failure(recipient: str) -> dict[str, Any]:
    event = permanent_failure(recipient)
    event.update(severity="temporary", reason="generic", **{"log-level": "warn"})
    event["delivery-status"] = {"attempt-no": 1, "message": "452 4.2.2 Mailbox full", "code": 452, "retry-seconds": 600}
    return event


def delivered(recipient: str) -> dict[str, Any]:
    event = permanent_failure(recipient)
    event.update(event="delivered", **{"log-level": "info"})
    for key in ("severity", "reason"):
        event.pop(key)
    event["delivery-status"] = {"attempt-no": 1, "message": "OK", "code": 250, "description": ""}
    return event
