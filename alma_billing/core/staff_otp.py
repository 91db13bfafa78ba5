"""Second-factor devices of staff users: enroll an authenticator with recovery codes, or remove them all."""

from base64 import b32encode
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from alma_billing.core.audit import Actor, AuditAction, audit_record

AUTHENTICATOR_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


@dataclass(frozen=True)
class Enrollment:
    """What the staff member needs, shown once: the otpauth URI (or its secret typed by hand) and recovery codes."""

    config_url: str
    secret_base32: str
    recovery_codes: list[str]


def staff_otp_enroll(
    *, user: Any, actor: Actor, recovery_codes: int = 10, totp_key_hex: str | None = None
) -> Enrollment:
    """Give `user` an authenticator (TOTP) device and a set of one-time recovery codes, replacing any they had."""
    with transaction.atomic():
        removed = _devices_delete(user)
        totp = TOTPDevice.objects.create(
            user=user, name=AUTHENTICATOR_NAME, confirmed=True, **({"key": totp_key_hex} if totp_key_hex else {})
        )
        codes = [StaticToken.random_token() for _ in range(recovery_codes)]
        static = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
        audit_record(
            actor=actor,
            action=AuditAction.STAFF_OTP_ENROLLED,
            obj=user,
            totp_device=totp.pk,
            static_device=static.pk,
            recovery_codes=len(codes),
            devices_removed=removed,
        )
    return Enrollment(
        config_url=totp.config_url, secret_base32=b32encode(totp.bin_key).decode().rstrip("="), recovery_codes=codes
    )


def staff_otp_reset(*, user: Any, actor: Actor) -> int:
    """Remove every second-factor device of `user` (a lost phone). Their verified sessions stop at the next page."""
    with transaction.atomic():
        removed = _devices_delete(user)
        audit_record(actor=actor, action=AuditAction.STAFF_OTP_RESET, obj=user, devices_removed=removed)
    return removed


def staff_recovery_codes_set(*, user: Any, codes: list[str]) -> None:
    """Make the user's recovery codes exactly `codes` (demo data: the same printed codes after every seed)."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_NAME, defaults={"confirmed": True})
    device.throttle_reset()  # a wrong code earlier makes the next check wait; a fresh seed starts clean
    device.token_set.exclude(token__in=codes).delete()
    present = set(device.token_set.values_list("token", flat=True))
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes if code not in present])


def _devices_delete(user: Any) -> int:
    devices = list(devices_for_user(user, confirmed=None))
    for device in devices:
        device.delete()
    return len(devices)
