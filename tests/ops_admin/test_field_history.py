"""Every field staff change on a patient, coverage, eligibility check, practice policy or provider is recorded:
who, when, before and after (a patient's contact details masked)."""

from typing import Any

import pytest
from django.test import Client

from alma_billing.core.models import AuditEvent
from invoices.models import Coverage, Patient, Practice
from tests.factories import CoverageFactory, PatientFactory, PracticeFactory, TherapySessionFactory

pytestmark = pytest.mark.django_db


def _patient_form(patient: Patient, coverages: list[Coverage], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "email": patient.email,
        "phone": str(patient.phone),
        "preferred_language": patient.preferred_language,
        "coverages-TOTAL_FORMS": str(len(coverages)),
        "coverages-INITIAL_FORMS": str(len(coverages)),
        "coverages-MIN_NUM_FORMS": "0",
        "coverages-MAX_NUM_FORMS": "1000",
    }
    for n, coverage in enumerate(coverages):
        data.update(
            {
                f"coverages-{n}-id": str(coverage.pk),
                f"coverages-{n}-patient": str(patient.pk),
                f"coverages-{n}-payer_name": coverage.payer_name,
                f"coverages-{n}-plan_name": coverage.plan_name,
                f"coverages-{n}-member_id": coverage.member_id,
                f"coverages-{n}-is_active": "on" if coverage.is_active else "",
            }
        )
    data.update(changes)
    return data


def _changes(obj: Any) -> list[AuditEvent]:
    label = obj._meta.label_lower
    return list(AuditEvent.objects.filter(object_type=label, object_id=str(obj.pk), action__startswith="record."))


def test_a_patient_edit_is_recorded_with_who_when_before_and_after(ops: Client, ops_user: Any) -> None:
    patient = PatientFactory(email="old.address@example.com", preferred_language="en")
    coverage = CoverageFactory(patient=patient, payer_name="Blue Harbor Health PPO")
    form = _patient_form(
        patient,
        [coverage],
        email="new.address@example.org",
        preferred_language="es",
        **{"coverages-0-plan_name": "Gold"},
    )
    response = ops.post(f"/admin/invoices/patient/{patient.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]

    [event] = _changes(patient)
    assert event.action == "record.changed" and event.actor == ops_user and event.created_at
    assert event.data["changes"] == {
        "email": {"before": "o•••@example.com", "after": "n•••@example.org"},  # masked: a reviewer sees it changed
        "preferred_language": {"before": "en", "after": "es"},
    }
    [coverage_event] = _changes(coverage)
    assert coverage_event.data["changes"] == {"plan_name": {"before": "", "after": "Gold"}}
    exported = str(AuditEvent.objects.values_list("data", flat=True)[:50])
    assert "old.address" not in exported and "new.address" not in exported


def test_a_phone_change_is_recorded_masked(ops: Client) -> None:
    patient = PatientFactory(phone="+12025550143")
    ops.post(f"/admin/invoices/patient/{patient.pk}/change/", _patient_form(patient, [], phone="+16175550100"))
    [event] = _changes(patient)
    assert event.data["changes"]["phone"] == {"before": "•••43", "after": "•••00"}
    assert "5550100" not in str(event.data)


def test_saving_without_a_change_records_nothing_and_a_refused_form_records_nothing(ops: Client) -> None:
    patient = PatientFactory()
    ops.post(f"/admin/invoices/patient/{patient.pk}/change/", _patient_form(patient, []))
    assert _changes(patient) == []
    refused = ops.post(
        f"/admin/invoices/patient/{patient.pk}/change/", _patient_form(patient, [], email="not-an-email")
    )
    assert refused.status_code == 200
    assert _changes(patient) == []


def test_adding_and_removing_a_coverage_is_recorded(ops: Client) -> None:
    patient = PatientFactory()
    coverage = CoverageFactory(patient=patient)
    form = _patient_form(patient, [coverage], **{"coverages-0-DELETE": "on"})
    form.update(
        {
            "coverages-TOTAL_FORMS": "2",
            "coverages-1-patient": str(patient.pk),
            "coverages-1-payer_name": "Prairie Mutual",
            "coverages-1-member_id": "PM-1",
            "coverages-1-is_active": "on",
        }
    )
    assert ops.post(f"/admin/invoices/patient/{patient.pk}/change/", form).status_code == 302
    added = Coverage.objects.get(member_id="PM-1")
    [add_event] = _changes(added)
    assert add_event.action == "record.added"
    assert add_event.data["changes"]["payer_name"] == {"before": None, "after": "Prairie Mutual"}
    assert add_event.data["changes"]["member_id"]["after"] == "•••-1"
    removed = AuditEvent.objects.get(action="record.deleted", object_type="invoices.coverage")
    assert removed.object_id == str(coverage.pk) and removed.data["changes"]["payer_name"]["after"] is None


def test_a_practice_policy_change_by_ops_is_recorded(ops: Client, ops_user: Any) -> None:
    practice = PracticeFactory(autopay_policy=Practice.AutopayPolicy.OFF)
    form = {"name": practice.name, "autopay_policy": "required"}
    assert ops.post(f"/admin/invoices/practice/{practice.pk}/change/", form).status_code == 302
    [event] = _changes(practice)
    assert event.actor == ops_user
    assert event.data["changes"] == {"autopay_policy": {"before": "off", "after": "required"}}


def test_a_provider_cannot_change_a_practice_policy(provider: Any, provider_client: Client) -> None:
    practice = provider.practice
    form = {"name": practice.name, "autopay_policy": "required"}
    assert provider_client.post(f"/admin/invoices/practice/{practice.pk}/change/", form).status_code == 403
    practice.refresh_from_db()
    assert practice.autopay_policy == Practice.AutopayPolicy.OFF and _changes(practice) == []


def test_a_provider_record_edited_by_ops_is_recorded(ops: Client, ops_user: Any, provider: Any) -> None:
    form = {
        "user": provider.user_id,
        "practice": provider.practice_id,
        "display_name": "Dr. Renamed",
        "npi": provider.npi,
    }
    response = ops.post(f"/admin/invoices/provider/{provider.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = _changes(provider)
    assert event.actor == ops_user
    assert event.data["changes"] == {"display_name": {"before": "Dr. Own", "after": "Dr. Renamed"}}


def test_a_provider_cannot_edit_their_provider_record(provider: Any, provider_client: Client) -> None:
    response = provider_client.post(f"/admin/invoices/provider/{provider.pk}/change/", {"display_name": "Dr. X"})
    assert response.status_code == 403
    provider.refresh_from_db()
    assert provider.display_name == "Dr. Own" and _changes(provider) == []


def test_an_eligibility_check_typed_by_a_provider_is_recorded_in_cents(provider: Any, provider_client: Client) -> None:
    session = TherapySessionFactory(provider=provider)
    coverage = CoverageFactory(patient=session.patient)
    form = {
        "coverage": coverage.pk,
        "checked_at_0": "2026-11-20",
        "checked_at_1": "10:00:00",
        "status": "completed",
        "plan_active": "on",
        "copay_cents": "$30.00",
        "coinsurance_bp": "",
        "deductible_remaining_cents": "1,250.00",
        "oop_max_remaining_cents": "",
        "raw_payload": "{}",
    }
    response = provider_client.post("/admin/invoices/eligibilitysnapshot/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    snapshot = coverage.eligibility_checks.get()
    assert snapshot.copay_cents == 3_000 and snapshot.deductible_remaining_cents == 125_000
    [event] = _changes(snapshot)
    assert event.action == "record.added" and event.actor == provider.user
    assert event.data["changes"]["copay_cents"] == {"before": None, "after": 3_000}
