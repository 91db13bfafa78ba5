"""Writing audit events; every service that changes state calls `audit_record` inside its transaction."""

from dataclasses import dataclass
from typing import Any

from django.db import models

from alma_billing.core.models import AuditEvent


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


def audit_record(*, actor: Actor, action: str, obj: models.Model, **data: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        ip_address=actor.ip,
        data=data,
    )
