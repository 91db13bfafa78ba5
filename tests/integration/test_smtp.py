"""P1 over real SMTP: the invoice email leaves through Django's SMTP backend to a local SMTP server (aiosmtpd)."""

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from alma_billing.core.audit import SYSTEM
from invoices import services
from tests.factories import insured_session
from tests.payments.stripe_fake import free_port

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def test_p1_invoice_email_goes_out_over_smtp_with_text_and_html(settings, django_capture_on_commit_callbacks) -> None:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        session = insured_session(plan_copay_cents=2_500)
        with django_capture_on_commit_callbacks(execute=True):
            services.session_complete(session_id=session.pk, actor=SYSTEM)
    finally:
        controller.stop()

    (sender, recipients, message) = inbox.messages[0]
    assert len(inbox.messages) == 1
    assert recipients == [session.patient.email] and "billing@alma.invalid" in sender
    assert message["Subject"] == "You have a new invoice from Alma"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "/pay/" in plain.get_content() and 'href="http://127.0.0.1:8000/pay/' in html.get_content()
