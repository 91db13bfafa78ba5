"""Development SMS verification: Twilio Verify's rules, codes stored hashed, each SMS written to the dev outbox.
Its limits are the settings the app enforces too (VERIFY_CODE_TTL, VERIFY_MAX_SENDS, VERIFY_MAX_CODE_CHECKS)."""

import hashlib
import hmac
import json
import secrets
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext

from alma_billing.core.mail import outbox_dir
from verification.gateways import CheckResult, SendLimitReached
from verification.models import LocalVerification


def _hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), code.encode(), hashlib.sha256).hexdigest()


def _pending(phone: str) -> LocalVerification | None:
    return (
        LocalVerification.objects.select_for_update()
        .filter(phone=phone, status=LocalVerification.Status.PENDING, expires_at__gt=timezone.now())
        .order_by("-created_at")
        .first()
    )


class LocalVerifyGateway:
    def send_code(self, *, phone_e164: str, locale: str = "en") -> None:
        code = f"{secrets.randbelow(1_000_000):06d}"
        with transaction.atomic():
            verification = _pending(phone_e164)
            if verification is None:
                LocalVerification.objects.create(
                    phone=phone_e164, code_hash=_hash(code), expires_at=timezone.now() + settings.VERIFY_CODE_TTL
                )
            else:
                if verification.sends >= settings.VERIFY_MAX_SENDS:
                    raise SendLimitReached()
                verification.sends += 1
                verification.code_hash = _hash(code)
                verification.save(update_fields=["sends", "code_hash"])
        with translation.override(locale):
            body = gettext("Your Alma billing code is {code}. It expires in 10 minutes. Don't share it.").format(
                code=code
            )
        self._write_sms(phone_e164, body)

    def check_code(self, *, phone_e164: str, code: str) -> CheckResult:
        with transaction.atomic():
            verification = _pending(phone_e164)
            if verification is None:
                return CheckResult.EXPIRED
            if verification.checks >= settings.VERIFY_MAX_CODE_CHECKS:
                verification.status = LocalVerification.Status.CANCELED
                verification.save(update_fields=["status"])
                return CheckResult.TOO_MANY_CHECKS
            verification.checks += 1
            approved = hmac.compare_digest(verification.code_hash, _hash(code))
            if approved:
                verification.status = LocalVerification.Status.APPROVED
            verification.save(update_fields=["checks", "status"])
        return CheckResult.APPROVED if approved else CheckResult.WRONG_CODE

    @staticmethod
    def _write_sms(phone: str, body: str) -> None:
        folder = outbox_dir()
        name = f"{time.time_ns()}-{secrets.token_hex(4)}.sms.json"
        payload = {"to": phone, "body": body, "sent_at": timezone.now().isoformat()}
        (folder / f".{name}.tmp").write_text(json.dumps(payload))
        (folder / f".{name}.tmp").rename(folder / name)
