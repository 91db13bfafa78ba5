"""Ops export the audit trail as CSV for a reviewer: filtered, streamed, safe to open in a spreadsheet; only ops."""

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from tests.factories import CoverageFactory, InvoiceFactory, PatientFactory
from tests.staff import signed_in

pytestmark = pytest.mark.django_db
EXPORT = "/admin/core/auditevent/export/"


def _rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.content[:2000]
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def _event(obj_type: str, obj_id: Any, action: str = "something.happened", **fields: Any) -> AuditEvent:
    return AuditEvent.objects.create(action=action, object_type=obj_type, object_id=str(obj_id), **fields)


def test_ops_download_everything_as_csv_and_the_export_is_itself_recorded(ops: Client, ops_user: Any) -> None:
    _event("invoices.invoice", 1, "invoice.voided", data={"reason": "Entered twice"})
    assert "Export as CSV" in ops.get("/admin/core/auditevent/").content.decode()
    assert 'name="date_from"' in ops.get(EXPORT).content.decode()
    response = ops.get(EXPORT, {"export": "1"})
    assert 'attachment; filename="audit-trail-' in response["Content-Disposition"]
    rows = _rows(response)
    assert rows[0][:4] == ["when (UTC)", "action", "object type", "object id"]
    voided = next(row for row in rows if row[1] == "invoice.voided")
    assert voided[2:4] == ["invoices.invoice", "1"] and '"reason":"Entered twice"' in voided[7]
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.actor == ops_user and exported.data["patient_id"] is None


def test_cells_that_look_like_formulas_are_made_text(ops: Client) -> None:
    _event("invoices.invoice", "=1+1", '=HYPERLINK("http://x")', actor_label="@SUM(A1)")
    _event("invoices.invoice", "+2", "-3", actor_label="\tcmd")
    _event("invoices.invoice", "\r4", "ok")
    rows = _rows(ops.get(EXPORT, {"export": "1"}))[1:]
    cells = [cell for row in rows for cell in row]
    for dangerous in ('=HYPERLINK("http://x")', "=1+1", "@SUM(A1)", "+2", "-3", "\tcmd", "\r4"):
        assert dangerous not in cells and "'" + dangerous in cells


def test_filters_by_date_patient_invoice_and_staff_user(ops: Client, ops_user: Any) -> None:
    patient, other = PatientFactory(), PatientFactory()
    invoice = InvoiceFactory(session__patient=patient)
    other_invoice = InvoiceFactory(session__patient=other)
    coverage = CoverageFactory(patient=patient)
    _event("invoices.patient", patient.pk, "patient.phone_changed")
    _event("invoices.invoice", invoice.pk, "invoice.emailed")
    _event("invoices.coverage", coverage.pk, "record.changed", actor=ops_user)
    _event("invoices.invoice", other_invoice.pk, "invoice.voided")
    old = _event("invoices.invoice", other_invoice.pk, "invoice.old")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    def actions(**query: Any) -> set[str]:
        rows = _rows(ops.get(EXPORT, {"export": "1", **query}))[1:]
        return {row[1] for row in rows if not row[1].startswith(("audit.", "staff."))}  # the sign-in, the export

    assert actions(patient=str(patient.pk)) == {"patient.phone_changed", "invoice.emailed", "record.changed"}
    assert actions(invoice=invoice.number) == {"invoice.emailed"}
    assert actions(invoice=str(other_invoice.pk)) == {"invoice.voided", "invoice.old"}
    assert actions(staff_user=ops_user.username) == {"record.changed"}
    earlier = (timezone.localdate() - timedelta(days=41)).isoformat()
    before = (timezone.localdate() - timedelta(days=30)).isoformat()
    assert actions(date_from=earlier, date_to=before) == {"invoice.old"}
    assert "invoice.old" not in actions(date_from=timezone.localdate().isoformat())


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"date_from": "2026-13-01"}, "Enter a valid date"),
        ({"date_from": "01/12/2026"}, "Enter a valid date"),
        ({"date_from": "2026-12-02", "date_to": "2026-12-01"}, "The start date is after the end date"),
        ({"patient": "abc"}, "No patient with this id"),
        ({"patient": "١٢"}, "No patient with this id"),
        ({"patient": "99999999999"}, "No patient with this id"),
        ({"patient": "999999"}, "No patient with this id"),
        ({"invoice": "INV-NOPE"}, "No invoice with this number or id"),
        ({"staff_user": "nobody"}, "No staff user with this username"),
        ({"staff_user": "x" * 5000}, "at most 150 characters"),
        ({"staff_user": "ops\x00"}, "Null characters are not allowed"),
    ],
)
def test_a_bad_filter_says_what_is_wrong_and_exports_nothing(ops: Client, query: dict[str, str], says: str) -> None:
    response = ops.get(EXPORT, {"export": "1", **query})
    assert response.status_code in (400,) and not response.streaming
    if "\x00" not in query.get("staff_user", ""):
        assert says in response.content.decode()
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_another_patients_events_stay_out_of_a_patients_export(ops: Client) -> None:
    patient, other = PatientFactory(), PatientFactory()
    _event("invoices.patient", other.pk, "patient.phone_changed")
    _event("invoices.patient", patient.pk, "mine", actor_label=f"patient:{patient.pk}")
    assert [row[1] for row in _rows(ops.get(EXPORT, {"export": "1", "patient": str(patient.pk)}))[1:]] == ["mine"]


def test_only_ops_may_export(provider_client: Client, ops: Client) -> None:
    assert provider_client.get(EXPORT, {"export": "1"}).status_code == 403
    assert provider_client.get(EXPORT).status_code == 403
    plain = get_user_model().objects.create_user("viewer", is_staff=True)
    assert signed_in(plain).get(EXPORT, {"export": "1"}).status_code == 403
    assert Client().get(EXPORT, {"export": "1"}).status_code == 302  # to the sign-in page
    assert not AuditEvent.objects.filter(action="audit.exported").exists()
    assert "Export as CSV" not in provider_client.get("/admin/core/auditevent/").content.decode()


def test_a_large_export_streams_every_row(ops: Client) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(action="invoice.emailed", object_type="invoices.invoice", object_id=str(n)) for n in range(5_000)
    )
    response = ops.get(EXPORT, {"export": "1"})
    assert not hasattr(response, "content")  # never built in memory as one string
    rows = _rows(response)
    assert sum(row[1] == "invoice.emailed" for row in rows) == 5_000
