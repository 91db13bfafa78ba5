"""Writing audit events; every service that changes state calls `audit_record` inside its transaction."""

import csv
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import models

from alma_billing.core.models import AuditEvent


class AuditAction(models.TextChoices):
    """Every action an audit event can record: one name per act. The values are what the rows store (and what the
    admin filters and the CSV export show), so a value never changes once written; add a member for a new act."""

    # Staff sign-in and second factor (alma_billing.core.staff_login, staff_otp)
    STAFF_LOGIN = "staff.login"
    STAFF_LOGOUT = "staff.logout"
    STAFF_LOGIN_FAILED = "staff.login_failed"
    STAFF_LOCKED_OUT = "staff.locked_out"
    STAFF_SECOND_FACTOR_FAILED = "staff.second_factor_failed"
    STAFF_OTP_ENROLLED = "staff.otp_enrolled"
    STAFF_OTP_RESET = "staff.otp_reset"
    # Field history and the audit trail itself (alma_billing.core.audit, core.admin)
    RECORD_ADDED = "record.added"
    RECORD_CHANGED = "record.changed"
    RECORD_DELETED = "record.deleted"
    AUDIT_EXPORTED = "audit.exported"
    # Patients (invoices, verification, core.language)
    PATIENT_LANGUAGE_CHANGED = "patient.language_changed"
    PATIENT_PHONE_CHANGED = "patient.phone_changed"
    PATIENT_EMAIL_UNDELIVERABLE = "patient.email_undeliverable"
    PATIENT_EMAIL_UNDELIVERABLE_CLEARED = "patient.email_undeliverable_cleared"
    PATIENT_EMAIL_RESEND_QUEUED = "patient.email_resend_queued"
    # Sessions and invoices (invoices.services, invoices.deliverability, payments, claims)
    SESSION_COMPLETED = "session.completed"
    SESSION_NEEDS_ATTENTION = "session.needs_attention"
    SESSION_NO_CHARGE = "session.no_charge"
    INVOICE_ISSUED = "invoice.issued"
    INVOICE_EMAILED = "invoice.emailed"
    INVOICE_EMAIL_SKIPPED = "invoice.email_skipped"
    INVOICE_LINK_RESENT = "invoice.link_resent"
    INVOICE_VOIDED = "invoice.voided"
    INVOICE_OUTSIDE_PAYMENT_REPORTED = "invoice.outside_payment_reported"
    INVOICE_PAID = "invoice.paid"
    INVOICE_CREDITED = "invoice.credited"
    INVOICE_CREDIT_CANCELED = "invoice.credit_canceled"
    # Reminders (invoices.reminders)
    REMINDER_RESOLVED = "reminder.resolved"
    REMINDERS_NO_EMAIL = "reminders.no_email"
    REMINDERS_EMAIL_UNDELIVERABLE = "reminders.email_undeliverable"
    # Verification and pay links (verification.services)
    VERIFICATION_SUCCEEDED = "verification.succeeded"
    VERIFICATION_LOCKED = "verification.locked"
    PAY_LINKS_REVOKED = "pay_links.revoked"
    # Payments, receipts, refunds, disputes (payments.services, payments.receipts)
    PAYMENT_STARTED = "payment.started"
    PAYMENT_INTENT_ADOPTED = "payment.intent_adopted"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELED = "payment.canceled"
    PAYMENT_NEEDS_ATTENTION = "payment.needs_attention"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_DISPUTED = "payment.disputed"
    PAYMENT_RECEIPT_EMAILED = "payment.receipt_emailed"
    RECEIPTS_LINK_EMAILED = "receipts.link_emailed"
    # Autopay (payments.autopay)
    AUTOPAY_ENROLLED = "autopay.enrolled"
    AUTOPAY_ENDED = "autopay.ended"
    AUTOPAY_BENEFIT_CARD_REFUSED = "autopay.benefit_card_refused"
    AUTOPAY_SCHEDULED = "autopay.scheduled"
    AUTOPAY_FAILED = "autopay.failed"
    AUTOPAY_GAVE_UP = "autopay.gave_up"
    # Insurance claims and remittances (claims.services; claim.<outcome> is one per ClaimPayment.Outcome)
    CLAIM_SUBMITTED = "claim.submitted"
    CLAIM_OPENED_FOR_EAP = "claim.opened_for_eap"
    CLAIM_ACCUMULATORS_UPDATED = "claim.accumulators_updated"
    CLAIM_REFUNDED = "claim.refunded"
    REMITTANCE_IMPORTED = "remittance.imported"
    CLAIM_ADJUSTED_UP = "claim.adjusted_up"
    CLAIM_REDUCED = "claim.reduced"
    CLAIM_CONFIRMED = "claim.confirmed"
    CLAIM_DENIED = "claim.denied"
    CLAIM_REVERSED = "claim.reversed"
    CLAIM_UNMATCHED = "claim.unmatched"
    CLAIM_NEEDS_ATTENTION = "claim.needs_attention"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a staff user, a patient, or the system. `ip` is the request's address, if any."""

    user: Any = None  # a django.contrib.auth user, or None
    label: str = "system"
    ip: str | None = None

    @classmethod
    def staff(cls, user: Any, ip: str | None = None) -> "Actor":
        return cls(user=user, label=f"user:{user.pk}", ip=ip)

    @classmethod
    def patient(cls, patient_id: int, ip: str | None = None) -> "Actor":
        return cls(label=f"patient:{patient_id}", ip=ip)


SYSTEM = Actor()


# The events queued by the innermost open audit_batch, if any.
_batch: ContextVar[list[AuditEvent] | None] = ContextVar("audit_batch", default=None)


def audit_record(*, actor: Actor, action: AuditAction, obj: models.Model, **data: Any) -> AuditEvent:
    """Record who did what to which record, from which IP, inside the caller's transaction. Inside an
    `audit_batch` the event is queued (returned unsaved) and written when the batch ends, in the same transaction."""
    event = AuditEvent(
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        ip_address=actor.ip,
        data=data,
    )
    pending = _batch.get()
    if pending is None:
        event.save(force_insert=True)
    else:
        pending.append(event)
    return event


@contextmanager
def audit_batch() -> Iterator[None]:
    """Write the audit events recorded inside in one multi-row INSERT, in order, when the outermost batch ends
    without an error (their `created_at` is then, a moment later in the same transaction). Open it inside the
    transaction it belongs to, in a service writing several events per transaction (invoice_issue). A nested
    batch that ends with an error drops only its own events: open one inside each savepoint that may roll back,
    so the events go with the work they record."""
    outer = _batch.get()
    mine: list[AuditEvent] = []
    token = _batch.set(mine)
    try:
        yield
    finally:
        _batch.reset(token)
    if outer is not None:
        outer.extend(mine)
    elif mine:
        AuditEvent.objects.bulk_create(mine)


# Field history: what staff changed on a record in the admin, before and after, one event per save.
# Contact details and identifiers of a patient are kept masked (enough to tell one value from another, not to
# read it): the audit trail is exported and handed to reviewers; the record itself holds the full current value.
MASKED_FIELDS: dict[str, set[str]] = {
    "invoices.patient": {"first_name", "last_name", "email", "phone", "stripe_customer_id"},
    "invoices.coverage": {"member_id"},
}


def _masked(name: str, value: Any) -> Any:
    if value in (None, ""):
        return value
    text = str(value)
    if name == "email" and "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}•••@{domain}"
    if name in {"phone", "member_id", "stripe_customer_id"}:
        return f"•••{text[-2:]}"
    return f"{text[:1]}••• ({len(text)} characters)"


def _plain(value: Any) -> Any:
    """A field value as JSON: numbers, booleans, None and JSON data as they are; anything else (dates, phones, UUIDs)
    as text."""
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    return str(value)


def field_values(obj: models.Model) -> dict[str, Any]:
    """The concrete, editable field values of a record (foreign keys as ids), masked where `MASKED_FIELDS` says."""
    masked = MASKED_FIELDS.get(obj._meta.label_lower, set())
    values: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = _plain(getattr(obj, field.attname))
        values[field.name] = _masked(field.name, value) if field.name in masked else value
    return values


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {"before": before.get(name), "after": value} for name, value in after.items() if before.get(name) != value
    }


def audit_field_changes(
    *, actor: Actor, obj: models.Model, before: dict[str, Any] | None, via: str = "admin"
) -> AuditEvent | None:
    """Record what changed on `obj` (re-read from the database) since `before`; None when nothing did.

    `before=None` records an addition: every field, with `before` empty."""
    fresh = type(obj)._default_manager.filter(pk=obj.pk).first()
    if fresh is None:
        return None
    changes = field_changes(before or {}, field_values(fresh))
    if not changes:
        return None
    action = AuditAction.RECORD_CHANGED if before is not None else AuditAction.RECORD_ADDED
    return audit_record(actor=actor, action=action, obj=fresh, changes=changes, via=via)


def audit_deletion(*, actor: Actor, obj: models.Model, via: str = "admin") -> AuditEvent:
    changes = {name: {"before": value, "after": None} for name, value in field_values(obj).items()}
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_label=actor.label,
        action=AuditAction.RECORD_DELETED,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        ip_address=actor.ip,
        data={"changes": changes, "via": via},
    )


# CSV export for reviewers.
CSV_COLUMNS = ["when (UTC)", "action", "object type", "object id", "actor", "staff user id", "ip address", "details"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def audit_csv_row(event: AuditEvent) -> list[str]:
    actor = event.actor.get_username() if event.actor is not None else event.actor_label
    details = json.dumps(event.data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    cells = [
        event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        event.action,
        event.object_type,
        event.object_id,
        actor,
        event.actor_id,
        event.ip_address,
        details,
    ]
    return [csv_cell(cell) for cell in cells]


class _Echo:
    """csv.writer's file: returns each line instead of keeping it, so the export streams."""

    def write(self, value: str) -> str:
        return value


def audit_csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        yield writer.writerow(audit_csv_row(event))
