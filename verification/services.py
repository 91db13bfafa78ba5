"""Patient access (P4): pay-link tokens, the phone check, SMS codes and the limits around them.

Tokens have 256 bits, are shown once in the email and stored hashed. Every failed step is recorded so the limits
hold per patient across all of their links and IPs, and per IP across patients.
"""

import hashlib
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import phonenumbers
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy, ngettext

from alma_billing.core.audit import Actor, AuditAction, audit_record
from invoices.models import Invoice, Patient
from verification.gateways import CheckResult, SendLimitReached, VerifyError, get_gateway
from verification.models import AccessAttempt, PayLink

logger = logging.getLogger(__name__)

Kind = AccessAttempt.Kind

MISMATCH = gettext_lazy(
    "That number doesn't match the phone number on your profile. Please check it and try again, or contact your "
    "provider to update the phone number on your Alma profile."
)
NOT_A_PHONE = gettext_lazy("Enter a US phone number with area code, like (555) 123-4567.")
# The limits count per patient, across all of their links and networks: the lock is the whole account's, so the
# message says so (and when it lifts, from the real counters).
LOCKED = gettext_lazy(
    "For your security, your Alma billing account is locked after too many attempts. This covers all of your "
    "invoices and links, not only this one."
)
IP_BLOCKED = gettext_lazy("Too many attempts from your network. Please try again in an hour.")
SEND_LIMIT = gettext_lazy("We've sent several codes already. Please wait 10 minutes before asking for another one.")
WRONG_CODE = gettext_lazy("That code isn't right. Check the text message and try again.")
CODE_EXPIRED = gettext_lazy("That code has expired or was already used. Send a new code and try again.")
NOT_A_CODE = gettext_lazy("Enter the 6-digit code from the text message.")
_HOUR = timedelta(hours=1)


class Step(StrEnum):
    OK = "ok"
    INVALID = "invalid"  # input not understood: not counted as a try
    REFUSED = "refused"  # wrong phone or code: counted
    LOCKED = "locked"  # limits reached: the account (or the network) is locked, no form can help until it lifts
    WAIT = "wait"  # too many codes sent: the code already texted still works
    UNAVAILABLE = "unavailable"  # the SMS provider failed


@dataclass(frozen=True)
class StepResult:
    step: Step
    message: str | Promise = ""


def _sms_locale() -> str:
    language = translation.get_language() or settings.LANGUAGE_CODE
    return "es" if language.startswith("es") else "en"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pay_link_create(*, patient: Patient, invoice: Invoice | None = None) -> tuple[PayLink, str]:
    """Returns the stored link and the raw token, which only the email ever carries."""
    token = secrets.token_urlsafe(32)
    link = PayLink.objects.create(
        token_hash=_hash(token),
        patient=patient,
        invoice=invoice,
        expires_at=timezone.now() + settings.PAY_LINK_TTL,
    )
    return link, token


def pay_link_find(token: str) -> PayLink | None:
    """The link for a token, expired or not; None for anything unknown (including malformed tokens)."""
    if not 20 <= len(token) <= 128:
        return None
    return PayLink.objects.filter(token_hash=_hash(token)).first()


@dataclass(frozen=True)
class OpenedLink:
    """A link as the landing page reads it, with the hint its lock check needs: whether the patient has a failed
    step inside the lockout window (without one the account cannot be locked, and patient_locked asks nothing)."""

    link: PayLink
    failed_recently: bool


# The link and the patient's recent failures in one statement, both by index (token_hash is unique; the attempts
# by patient and time). The columns are PayLink's own, in its field order, so the row builds the model as the ORM
# would (PayLink.from_db).
_LINK_OPEN_SQL = """
SELECT link.id, link.token_hash, link.patient_id, link.invoice_id, link.created_at, link.expires_at,
       link.revoked_at, link.revoke_reason,
       EXISTS (
           SELECT 1 FROM verification_accessattempt attempt
           WHERE attempt.patient_id = link.patient_id AND NOT attempt.succeeded AND attempt.created_at >= %(since)s
       )
FROM verification_paylink link
WHERE link.token_hash = %(token_hash)s
"""
_LINK_FIELDS = (
    "id",
    "token_hash",
    "patient_id",
    "invoice_id",
    "created_at",
    "expires_at",
    "revoked_at",
    "revoke_reason",
)


def pay_link_open(token: str) -> OpenedLink | None:
    """pay_link_find and the first half of patient_locked in one statement (the landing page, on every email click).
    None for anything unknown, as pay_link_find."""
    if not 20 <= len(token) <= 128:
        return None
    if connection.vendor != "postgresql":  # the SQLite development default
        return pay_link_open_from_orm(token)
    since = timezone.now() - settings.VERIFY_LOCKOUT
    with connection.cursor() as cursor:
        cursor.execute(_LINK_OPEN_SQL, {"since": since, "token_hash": _hash(token)})
        row = cursor.fetchone()
    if row is None:
        return None
    return OpenedLink(link=PayLink.from_db(connection.alias, _LINK_FIELDS, row[:-1]), failed_recently=row[-1])


def pay_link_open_from_orm(token: str) -> OpenedLink | None:
    """What pay_link_open reads, through the ORM (also one statement; its SQL costs more Python to build)."""
    if not 20 <= len(token) <= 128:
        return None
    since = timezone.now() - settings.VERIFY_LOCKOUT
    recent = AccessAttempt.objects.filter(patient_id=OuterRef("patient_id"), succeeded=False, created_at__gte=since)
    found = PayLink.objects.filter(token_hash=_hash(token)).annotate(failed_recently=Exists(recent)).first()
    return None if found is None else OpenedLink(link=found, failed_recently=found.failed_recently)


def pay_link_url(token: str) -> str:
    return f"{settings.SITE_URL}/pay/{token}/"


def pay_link_email_context(*, patient: Patient, invoice: Invoice | None) -> tuple[PayLink, dict[str, object]]:
    """A fresh link for an email, and what every patient email says around it (name, link, expiry)."""
    link, token = pay_link_create(patient=patient, invoice=invoice)
    return link, {"first_name": patient.first_name, "url": pay_link_url(token), "expires_at": link.expires_at}


def pay_links_revoke(*, patient: Patient, reason: str, actor: Actor) -> int:
    """Stop every live link of a patient (e.g. the phone number on the profile changed)."""
    with transaction.atomic():
        count = PayLink.objects.filter(patient=patient, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoke_reason=reason
        )
        audit_record(actor=actor, action=AuditAction.PAY_LINKS_REVOKED, obj=patient, count=count, reason=reason)
    return count


def normalize_phone(raw: str) -> str | None:
    """E.164 for any common US formatting ("(202) 555-0143", "202.555.0143", "+1 202 555 0143"); None if invalid."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _failures(*, patient_id: int, kind: str, now: datetime, up_to: int | None = None) -> QuerySet[AccessAttempt]:
    """Failed attempts of a kind inside the lockout window, only those after the last success
    (with `up_to`, only the attempts recorded up to and including that one)."""
    window_start = now - settings.VERIFY_LOCKOUT
    attempts = AccessAttempt.objects.filter(patient_id=patient_id, kind=kind, created_at__gte=window_start)
    if up_to is not None:
        attempts = attempts.filter(pk__lte=up_to)
    last_success = attempts.filter(succeeded=True).aggregate(at=Max("created_at"))["at"]
    failures = attempts.filter(succeeded=False)
    if last_success is not None:
        failures = failures.filter(created_at__gt=last_success)
    return failures


def _failures_since(*, patient_id: int, kind: str, now: datetime, up_to: int | None = None) -> int:
    return _failures(patient_id=patient_id, kind=kind, now=now, up_to=up_to).count()


def _limit_for(kind: str) -> int:
    return int(settings.VERIFY_MAX_PHONE_TRIES if kind == Kind.PHONE else settings.VERIFY_MAX_CODE_CHECKS)


def _lockout_minutes() -> int:
    return int(settings.VERIFY_LOCKOUT.total_seconds() // 60)


def _locked_message(*, patient_id: int, now: datetime) -> str:
    """The account lock, and when it lifts: when enough of the failures that reached a limit leave the window."""
    unlock_at = now
    for kind in (Kind.PHONE, Kind.CODE):
        limit = _limit_for(kind)
        newest = list(
            _failures(patient_id=patient_id, kind=kind, now=now)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit]
        )
        if len(newest) >= limit:
            unlock_at = max(unlock_at, newest[limit - 1] + settings.VERIFY_LOCKOUT)
    minutes = max(1, -(-int((unlock_at - now).total_seconds()) // 60))  # rounded up: never "try again" too early
    until = ngettext(
        "Please try again in {minutes} minute, or contact your provider if you need help.",
        "Please try again in {minutes} minutes, or contact your provider if you need help.",
        minutes,
    ).format(minutes=minutes)
    return f"{LOCKED} {until}"


def _tries_left(*, patient_id: int, kind: str, now: datetime) -> int:
    return max(0, _limit_for(kind) - _failures_since(patient_id=patient_id, kind=kind, now=now))


def _refused(message: str | Promise, *, patient_id: int, kind: str) -> StepResult:
    """A counted wrong try: the lock message on the very try that locks, otherwise how many tries are left."""
    now = timezone.now()
    left = _tries_left(patient_id=patient_id, kind=kind, now=now)
    if left == 0:
        return StepResult(Step.LOCKED, _locked_message(patient_id=patient_id, now=now))
    if kind == Kind.CODE:
        words = ngettext(
            "You have {count} code check left before your account is locked for {minutes} minutes.",
            "You have {count} code checks left before your account is locked for {minutes} minutes.",
            left,
        )
    else:
        words = ngettext(
            "You have {count} try left before your account is locked for {minutes} minutes.",
            "You have {count} tries left before your account is locked for {minutes} minutes.",
            left,
        )
    return StepResult(Step.REFUSED, f"{message} {words.format(count=left, minutes=_lockout_minutes())}")


def patient_locked(*, patient_id: int, failed_recently: bool | None = None) -> str | None:
    """The lock message when this patient's access is locked right now (for a page opened while locked), else None.
    One indexed query in the usual case (no failure in the window); none when the caller already read
    `failed_recently` (pay_link_open) and it is False."""
    now = timezone.now()
    if failed_recently is None:
        failed_recently = AccessAttempt.objects.filter(
            patient_id=patient_id, succeeded=False, created_at__gte=now - settings.VERIFY_LOCKOUT
        ).exists()
    if not failed_recently:
        return None
    for kind in (Kind.PHONE, Kind.CODE):
        if _failures_since(patient_id=patient_id, kind=kind, now=now) >= _limit_for(kind):
            return _locked_message(patient_id=patient_id, now=now)
    return None


def _network(ip: str | None) -> str | None:
    """What the per-IP limit counts by: an IPv4 address, or an IPv6 address's /64 (one client's usual share, so
    rotating through its own addresses does not reset the count)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)


def _limit_reached(*, patient_id: int, ip: str | None, now: datetime) -> StepResult | None:
    ip = _network(ip)
    if ip:
        recent = AccessAttempt.objects.filter(ip_address=ip, succeeded=False, created_at__gte=now - _HOUR)
        if recent.filter(Q(kind=Kind.PHONE) | Q(kind=Kind.CODE)).count() >= settings.VERIFY_MAX_FAILURES_PER_IP:
            return StepResult(Step.LOCKED, IP_BLOCKED)
    if (
        _failures_since(patient_id=patient_id, kind=Kind.PHONE, now=now) >= settings.VERIFY_MAX_PHONE_TRIES
        or _failures_since(patient_id=patient_id, kind=Kind.CODE, now=now) >= settings.VERIFY_MAX_CODE_CHECKS
    ):
        return StepResult(Step.LOCKED, _locked_message(patient_id=patient_id, now=now))
    return None


def _lock_patient(patient_id: int) -> Patient:
    """Serialize one patient's access steps: the limits are checked and the try is counted under this row lock,
    so a burst of concurrent requests cannot make more tries than the limit allows."""
    return Patient.objects.select_for_update().get(pk=patient_id)


def _audit_if_locked_by(attempt: AccessAttempt, *, link: PayLink, ip: str | None) -> None:
    """The failed attempt that reaches a limit locks the patient's access: leave a trail for staff (once)."""
    limit = _limit_for(attempt.kind)
    failures = _failures_since(patient_id=link.patient_id, kind=attempt.kind, now=timezone.now(), up_to=attempt.pk)
    if failures == limit:
        audit_record(
            actor=Actor(label="patient-link", ip=ip),
            action=AuditAction.VERIFICATION_LOCKED,
            obj=link.patient,
            kind=attempt.kind,
            pay_link_id=link.pk,
        )
        logger.warning("patient %s locked out after %s failed %s attempts", link.patient_id, failures, attempt.kind)


def _record(*, kind: str, ok: bool, link: PayLink, ip: str | None) -> AccessAttempt:
    return AccessAttempt.objects.create(
        kind=kind, succeeded=ok, patient_id=link.patient_id, pay_link=link, ip_address=_network(ip)
    )


def phone_submit(*, link: PayLink, raw_phone: str, ip: str | None) -> StepResult:
    """Compare the entered number with the profile's (E.164); on a match, text a code."""
    locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=timezone.now())
    if locked:
        return locked
    phone = normalize_phone(raw_phone)
    if phone is None:
        return StepResult(Step.INVALID, NOT_A_PHONE)
    with transaction.atomic():
        patient = _lock_patient(link.patient_id)
        locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=timezone.now())
        if locked:
            return locked
        matches = phone == patient.phone.as_e164
        attempt = _record(kind=Kind.PHONE, ok=matches, link=link, ip=ip)
        if not matches:
            _audit_if_locked_by(attempt, link=link, ip=ip)
            return _refused(MISMATCH, patient_id=link.patient_id, kind=Kind.PHONE)
    return code_send(link=link, ip=ip)


def code_send(*, link: PayLink, ip: str | None) -> StepResult:
    with transaction.atomic():
        patient = _lock_patient(link.patient_id)
        now = timezone.now()
        locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=now)
        if locked:
            return locked
        sends = AccessAttempt.objects.filter(
            patient_id=link.patient_id,
            kind=Kind.SEND,
            succeeded=True,
            created_at__gte=now - settings.VERIFY_SEND_WINDOW,
        ).count()
        if sends >= settings.VERIFY_MAX_SENDS:
            return StepResult(Step.WAIT, SEND_LIMIT)
        # Counted before the text goes out (outside the lock: an outside call never holds a row lock).
        reserved = _record(kind=Kind.SEND, ok=True, link=link, ip=ip)
    try:
        # The SMS is in the language of the page the patient asked for it on.
        get_gateway().send_code(phone_e164=patient.phone.as_e164, locale=_sms_locale())
    except SendLimitReached as error:
        reserved.delete()
        return StepResult(Step.WAIT, error.message)
    except VerifyError as error:
        reserved.delete()
        return StepResult(Step.UNAVAILABLE, error.message)
    return StepResult(Step.OK)


def code_submit(*, link: PayLink, raw_code: str, sent_at: datetime, ip: str | None) -> StepResult:
    """Check a code: 6 digits, single use, 10 minutes, at most 5 checks (then locked)."""
    now = timezone.now()
    locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=now)
    if locked:
        return locked
    code = "".join(raw_code.split())
    if len(code) != 6 or not code.isdigit():
        return StepResult(Step.INVALID, NOT_A_CODE)
    if now - sent_at > settings.VERIFY_CODE_TTL:
        return StepResult(Step.REFUSED, CODE_EXPIRED)
    with transaction.atomic():
        patient = _lock_patient(link.patient_id)
        locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=timezone.now())
        if locked:
            return locked
        # The check counts as a failed one until the SMS provider approves it: concurrent checks beyond the
        # limit find the patient locked instead of reaching the provider.
        attempt = _record(kind=Kind.CODE, ok=False, link=link, ip=ip)
    try:
        result = get_gateway().check_code(phone_e164=patient.phone.as_e164, code=code)
    except VerifyError as error:
        attempt.delete()  # the check was not made: it does not count
        return StepResult(Step.UNAVAILABLE, error.message)
    if result == CheckResult.APPROVED:
        AccessAttempt.objects.filter(pk=attempt.pk).update(succeeded=True)
        _record(kind=Kind.PHONE, ok=True, link=link, ip=ip)  # a success clears the phone counter too
        audit_record(
            actor=Actor.patient(link.patient_id, ip=ip),
            action=AuditAction.VERIFICATION_SUCCEEDED,
            obj=link.patient,
            pay_link_id=link.pk,
        )
        return StepResult(Step.OK)
    _audit_if_locked_by(attempt, link=link, ip=ip)
    if result == CheckResult.TOO_MANY_CHECKS:
        locked = _limit_reached(patient_id=link.patient_id, ip=ip, now=timezone.now())
        return locked or StepResult(Step.REFUSED, CODE_EXPIRED)
    if result == CheckResult.EXPIRED:
        return StepResult(Step.REFUSED, CODE_EXPIRED)
    blocked = _limit_reached(patient_id=link.patient_id, ip=ip, now=timezone.now())
    if blocked and blocked.message == IP_BLOCKED:
        return blocked
    return _refused(WRONG_CODE, patient_id=link.patient_id, kind=Kind.CODE)
