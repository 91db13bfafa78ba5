"""Development email backend: each message becomes one .eml file under OUTBOX_DIR, listed at /dev/outbox/."""

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.functional import Promise


def outbox_dir() -> Path:
    path = Path(settings.OUTBOX_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


class OutboxEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        folder = outbox_dir()
        for message in email_messages:
            name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(message.message().as_bytes())
            tmp.rename(folder / name)  # atomic, so a reader never sees half a message
        return len(email_messages)


def build_patient_email(
    *,
    to: str,
    subject: str | Promise,
    template: str,
    context: dict[str, Any],
    headers: dict[str, str] | None = None,
    language: str | None = None,
) -> EmailMultiAlternatives:
    """`template`.txt with `template`.html as its alternative. Subjects and bodies stay discreet (no clinical
    words, no provider names): the templates under templates/emails/ are the only place the words live.
    Subject, bodies and any lazy strings in `context` are rendered in `language` (the patient's preferred one)."""
    with translation.override(language or settings.LANGUAGE_CODE):
        context = {**context, "subject": str(subject)}  # also the HTML part's <title>
        message = EmailMultiAlternatives(
            subject=context["subject"],
            body=render_to_string(f"{template}.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[to],
            headers=headers,
        )
        message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
        if "Content-Language" not in (headers or {}):
            message.extra_headers["Content-Language"] = translation.get_language()
    return message


def send_patient_email(
    *,
    to: str,
    subject: str | Promise,
    template: str,
    context: dict[str, Any],
    headers: dict[str, str] | None = None,
    language: str | None = None,
) -> None:
    build_patient_email(
        to=to, subject=subject, template=template, context=context, headers=headers, language=language
    ).send()
