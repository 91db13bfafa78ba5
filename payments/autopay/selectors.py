"""Autopay reads: which practices offer it to a patient, and the patient's current enrollment."""

from invoices.models import Practice
from payments.models import AutopayEnrollment


def autopay_practices(*, patient_id: int) -> list[Practice]:
    """The practices this patient sees whose policy offers autopay (optional or required)."""
    return list(
        Practice.objects.filter(providers__sessions__patient_id=patient_id)
        .exclude(autopay_policy=Practice.AutopayPolicy.OFF)
        .distinct()
        .order_by("name")
    )


def active_enrollment(*, patient_id: int) -> AutopayEnrollment | None:
    return AutopayEnrollment.objects.filter(patient_id=patient_id, ended_at__isnull=True).first()
