"""Issue 15: bounces and spam complaints arrive by Mailgun's signed webhook; the address is marked undeliverable,
invoice emails and reminders skip it and say so, staff see it, and updating the email sends what is open."""

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from invoices import services
from invoices.models import EmailEvent, Invoice, Patient, ReminderLog, ReminderRun
from invoices.reminders import reminders_run
from tests.factories import InvoiceFactory, PatientFactory, UserFactory
from tests.ops.flows import complaint, delivered, permanent_failure, post, sign, temporary_failure
from tests.staff import signed_in

pytestmark = pytest.mark.django_db


def _patient(email: str = "Robin.Diaz@Example.com") -> Patient:
    return PatientFactory(email=email)


def _issued(patient: Patient, days_ago: int = 0, amount: int = 7_000) -> Invoice:
    invoice = InvoiceFactory(session__patient=patient, amount_cents=amount)
    Invoice.objects.filter(pk=invoice.pk).update(issued_at=timezone.now() - timedelta(days=days_ago))
    invoice.refresh_from_db()
    return invoice


def _nothing_changed(patient: Patient) -> None:
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "" and patient.email_undeliverable_at is None
    assert not AuditEvent.objects.filter(action="patient.email_undeliverable", object_id=str(patient.pk)).exists()


# --- the webhook: real payload shapes, signed ---


def test_a_signed_permanent_bounce_marks_the_patient_case_insensitively_and_stores_no_address() -> None:
    patient = _patient()
    response = post(sign(permanent_failure("robin.diaz@example.COM")))
    assert response.status_code == 200
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "bounced"
    assert patient.email_undeliverable_at is not None
    event = EmailEvent.objects.get()
    assert (event.provider, event.event_type, event.reason, event.patients_marked) == (
        "mailgun",
        "bounced",
        "bounced",
        1,
    )
    row = json.dumps(list(EmailEvent.objects.values())[0], default=str).lower()
    assert "robin" not in row and "example.com" not in row
    audit = AuditEvent.objects.get(action="patient.email_undeliverable")
    assert audit.object_id == str(patient.pk) and audit.data["reason"] == "bounced"
    assert "example" not in json.dumps(audit.data).lower()


def test_a_spam_complaint_marks_the_address_complained() -> None:
    patient = _patient("sam@example.org")
    assert post(sign(complaint("sam@example.org"))).status_code == 200
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "complained"


def test_every_patient_sharing_the_address_is_marked() -> None:
    parent, child = _patient("family@example.org"), _patient("FAMILY@example.org")
    other = _patient("someone@example.org")
    assert post(sign(permanent_failure("family@example.org"))).status_code == 200
    marked = set(Patient.objects.exclude(email_undeliverable_reason="").values_list("pk", flat=True))
    assert marked == {parent.pk, child.pk}
    _nothing_changed(other)


@pytest.mark.parametrize("event", [temporary_failure, delivered], ids=["mailbox-full", "delivered"])
def test_a_temporary_failure_or_a_delivery_changes_no_patient(event: Any) -> None:
    patient = _patient("robin@example.org")
    assert post(sign(event("robin@example.org"))).status_code == 200
    _nothing_changed(patient)
    assert EmailEvent.objects.get().reason == ""


def test_a_bounce_for_an_address_nobody_has_stores_only_the_event_id() -> None:
    patient = _patient("robin@example.org")
    assert post(sign(permanent_failure("stranger@elsewhere.example"))).status_code == 200
    _nothing_changed(patient)
    event = EmailEvent.objects.get()
    assert event.patients_marked == 0
    assert "stranger" not in json.dumps(list(EmailEvent.objects.values())[0], default=str)


def test_a_bounce_for_the_old_address_after_staff_changed_it_changes_nothing() -> None:
    patient = _patient("old@example.org")
    Patient.objects.filter(pk=patient.pk).update(email="new@example.org")
    assert post(sign(permanent_failure("old@example.org"))).status_code == 200
    _nothing_changed(patient)


# --- the webhook: refused, nothing stored, no patient changed ---


def _refused(response: Any, status: int, patient: Patient) -> str:
    assert response.status_code == status, response.content
    assert not EmailEvent.objects.exists()
    _nothing_changed(patient)
    return str(response.content.decode())


def test_an_unsigned_event_is_refused() -> None:
    patient = _patient("robin@example.org")
    text = _refused(post({"event-data": permanent_failure("robin@example.org")}), 400, patient)
    assert "signature" in text


def test_a_forged_signature_is_refused() -> None:
    patient = _patient("robin@example.org")
    payload = sign(permanent_failure("robin@example.org"), key="not-the-key")
    assert "does not match" in _refused(post(payload), 403, patient)


def test_a_signed_event_whose_contents_were_swapped_for_another_address_is_refused() -> None:
    """Mailgun signs the token and timestamp only: a token seen before cannot carry a new body."""
    victim, first = _patient("victim@example.org"), _patient("first@example.org")
    payload = sign(delivered("first@example.org"))
    assert post(payload).status_code == 200
    payload["event-data"] = permanent_failure("victim@example.org")
    response = post(payload)
    assert response.status_code == 406
    _nothing_changed(victim)
    _nothing_changed(first)
    assert EmailEvent.objects.count() == 1


def test_a_replayed_event_is_refused_and_changes_nothing() -> None:
    patient = _patient("robin@example.org")
    payload = sign(permanent_failure("robin@example.org"))
    assert post(payload).status_code == 200
    patient.refresh_from_db()
    first_at = patient.email_undeliverable_at
    Patient.objects.filter(pk=patient.pk).update(email_undeliverable_reason="", email_undeliverable_at=None)
    response = post(payload)
    assert response.status_code == 406 and "Already received" in response.content.decode()
    _patient_after = Patient.objects.get(pk=patient.pk)
    assert _patient_after.email_undeliverable_reason == "" and first_at is not None
    assert EmailEvent.objects.count() == 1


def test_a_signed_event_with_a_stale_timestamp_is_refused() -> None:
    patient = _patient("robin@example.org")
    old = int(timezone.now().timestamp()) - 13 * 3600
    assert "Stale" in _refused(post(sign(permanent_failure("robin@example.org"), timestamp=old)), 400, patient)
    future = int(timezone.now().timestamp()) + 3600
    _refused(post(sign(permanent_failure("robin@example.org"), timestamp=future)), 400, patient)


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"\x00\xff\xfe garbage", "application/json"),
        (b"not json at all", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"signature": "x", "event-data": []}', "application/json"),
        (b"token=a&timestamp=1&signature=b&event=bounced", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
        (
            '{"signature": {"token": "t\u00f1", "timestamp": "1", "signature": "s"}, "event-data": {}}'.encode(),
            "application/json",
        ),
        (b'{"signature": {"token": ["a"], "timestamp": 1, "signature": null}, "event-data": {}}', "application/json"),
        (
            json.dumps(
                {"signature": {"token": "a" * 5000, "timestamp": "1", "signature": "b"}, "event-data": {}}
            ).encode(),
            "application/json",
        ),
    ],
    ids=[
        "binary",
        "not-json",
        "a-list",
        "wrong-types",
        "legacy-form",
        "empty",
        "unicode-token",
        "typed-fields",
        "long-token",
    ],
)
def test_garbage_gets_a_clear_400_and_changes_nothing(raw: bytes, content_type: str) -> None:
    patient = _patient("robin@example.org")
    text = _refused(post(None, raw=raw, content_type=content_type), 400, patient)
    assert text.strip() and "<html" not in text.lower()


def test_a_huge_body_gets_a_clear_400() -> None:
    patient = _patient("robin@example.org")
    event = permanent_failure("robin@example.org")
    event["user-variables"] = {"padding": "x" * (2 * 1024 * 1024)}
    assert "too large" in _refused(post(sign(event)), 400, patient)


def test_a_signed_event_with_fields_of_the_wrong_types_gets_a_400() -> None:
    patient = _patient("robin@example.org")
    event = permanent_failure("robin@example.org")
    event["timestamp"] = "tomorrow"
    _refused(post(sign(event)), 400, patient)
    event = permanent_failure("robin@example.org")
    event["message"] = "not an object"
    _refused(post(sign(event)), 400, patient)
    event = permanent_failure("robin@example.org")
    event["recipient"] = ["robin@example.org"]
    assert post(sign(event)).status_code == 200  # recorded, but an address that is not a string marks nobody
    _nothing_changed(patient)


def test_without_a_signing_key_the_webhook_takes_nothing(settings: Any) -> None:
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": ""}
    patient = _patient("robin@example.org")
    _refused(post(sign(permanent_failure("robin@example.org"))), 404, patient)


# --- what a bouncing address changes ---


def _bounce(patient: Patient) -> None:
    assert post(sign(permanent_failure(patient.email))).status_code == 200


def test_an_invoice_email_to_a_bouncing_address_is_skipped_with_the_reason() -> None:
    patient = _patient("robin@example.org")
    _bounce(patient)
    invoice = _issued(patient)
    mail.outbox.clear()
    assert services.invoice_email_send(invoice_id=invoice.pk) is False
    assert mail.outbox == []
    invoice.refresh_from_db()
    assert invoice.emailed_at is None and "bouncing" in invoice.email_problem
    assert AuditEvent.objects.filter(action="invoice.email_skipped", data__reason="email undeliverable").exists()


def test_reminders_skip_a_bouncing_address_and_the_summary_counts_it() -> None:
    bouncing, fine = _patient("bouncing@example.org"), _patient("fine@example.org")
    _issued(bouncing, days_ago=3)
    _issued(fine, days_ago=3)
    _bounce(bouncing)
    mail.outbox.clear()
    out = io.StringIO()
    call_command("send_reminders", stdout=out, stderr=io.StringIO())
    assert [m.to for m in mail.outbox] == [["fine@example.org"]]
    assert f"Skipped, email undeliverable: 1 (patient ids: {bouncing.pk})" in out.getvalue()
    run = ReminderRun.objects.get()
    assert run.skipped_undeliverable == 1 and run.patients_reminded == 1
    log = ReminderLog.objects.get(patient=bouncing)
    assert log.status == ReminderLog.Status.SKIPPED and "undeliverable" in log.reason
    assert AuditEvent.objects.filter(action="reminders.email_undeliverable", data__patient_ids=[bouncing.pk]).exists()


def test_a_bounce_between_planning_and_sending_skips_that_reminder() -> None:
    patient = _patient("robin@example.org")
    _issued(patient, days_ago=3)
    from invoices import reminders

    original = reminders.reminders_plan

    def plan_then_bounce(**kwargs: Any) -> Any:
        result = original(**kwargs)
        _bounce(patient)
        return result

    mail.outbox.clear()
    reminders.reminders_plan = plan_then_bounce
    try:
        summary = reminders_run(as_of=timezone.localdate())
    finally:
        reminders.reminders_plan = original
    assert mail.outbox == [] and summary.reminded == 0 and summary.bounced_meanwhile == 1
    assert summary.attempted == 1
    assert ReminderRun.objects.get().skipped_undeliverable == 1


# --- staff see it; updating the email sends what is open, once ---


def _provider_client(patient: Patient) -> Any:
    invoice = patient.invoices.first()
    assert invoice is not None
    user = invoice.provider.user
    user.groups.add(Group.objects.get(name="Providers"))
    return signed_in(user)


def _edit(client: Any, patient: Patient, **changes: str) -> Any:
    from django.test import TestCase

    form = {
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "email": patient.email,
        "phone": str(patient.phone),
        "preferred_language": patient.preferred_language,
        "coverages-TOTAL_FORMS": "0",
        "coverages-INITIAL_FORMS": "0",
        **changes,
    }
    with TestCase.captureOnCommitCallbacks(execute=True):  # the queued email runs once the save commits
        return client.post(f"/admin/invoices/patient/{patient.pk}/change/", form, follow=True)


def test_the_provider_sees_email_bouncing_on_the_patient() -> None:
    patient = _patient("robin@example.org")
    _issued(patient)
    _bounce(patient)
    client = _provider_client(patient)
    page = client.get(f"/admin/invoices/patient/{patient.pk}/change/").content.decode()
    assert "Email bouncing: update the patient&#x27;s email" in page
    listing = client.get("/admin/invoices/patient/?email_status=bouncing").content.decode()
    assert f"/admin/invoices/patient/{patient.pk}/change/" in listing and "Email bouncing" in listing


def test_updating_the_email_clears_the_flag_and_sends_one_email_listing_what_is_open() -> None:
    patient = _patient("robin@example.org")
    older = _issued(patient, days_ago=10, amount=5_000)
    services.invoice_email_send(invoice_id=older.pk)
    _bounce(patient)
    newer = _issued(patient, days_ago=1, amount=8_000)
    assert services.invoice_email_send(invoice_id=newer.pk) is False  # skipped: bouncing
    client = _provider_client(patient)
    mail.outbox.clear()

    response = _edit(client, patient, email="robin.new@example.org")

    assert response.status_code == 200
    assert "One email listing what is open is on its way" in response.content.decode()
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "" and patient.email_undeliverable_at is None
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["robin.new@example.org"] and message.subject.startswith("Reminder")
    assert older.number in message.body and newer.number in message.body
    newer.refresh_from_db()
    assert newer.emailed_at is not None and newer.email_problem == ""
    assert AuditEvent.objects.filter(action="patient.email_undeliverable_cleared", object_id=str(patient.pk)).exists()
    # The sweep finds nothing left to send: not a second email for the skipped invoice.
    from invoices.tasks import invoices_sweep

    invoices_sweep()
    assert len(mail.outbox) == 1
    # The dashboard no longer lists the patient.
    assert not Patient.objects.exclude(email_undeliverable_reason="").exists()


def test_an_edit_that_leaves_the_email_alone_keeps_the_flag_and_sends_nothing() -> None:
    patient = _patient("robin@example.org")
    _issued(patient)
    _bounce(patient)
    client = _provider_client(patient)
    mail.outbox.clear()
    _edit(client, patient, first_name="Robyn")
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "bounced" and mail.outbox == []


def test_updating_to_an_address_already_reported_bouncing_keeps_the_flag_and_sends_nothing() -> None:
    bad, patient = _patient("dead@example.org"), _patient("robin@example.org")
    _issued(patient)
    _bounce(bad)
    _bounce(patient)
    mail.outbox.clear()
    response = _edit(_provider_client(patient), patient, email="DEAD@example.org")
    assert "the new address is already reported bouncing" in response.content.decode()
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "bounced" and mail.outbox == []


def test_updating_the_email_of_a_patient_with_nothing_open_clears_the_flag_and_sends_nothing() -> None:
    patient = _patient("robin@example.org")
    invoice = _issued(patient)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID)
    _bounce(patient)
    mail.outbox.clear()
    _edit(_provider_client(patient), patient, email="robin.new@example.org")
    patient.refresh_from_db()
    assert patient.email_undeliverable_reason == "" and mail.outbox == []


def test_the_fresh_email_survives_a_broker_that_is_down(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The reminder row is the outbox: a lost enqueue leaves it pending, and the sweep sends it."""
    from kombu.exceptions import OperationalError

    from invoices import tasks

    patient = _patient("robin@example.org")
    invoice = _issued(patient, days_ago=4)
    _bounce(patient)
    assert services.invoice_email_send(invoice_id=invoice.pk) is False  # skipped: bouncing

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.reminder_deliver_task, "apply_async", broker_down)
    settings.ENQUEUE_RAISE_TASK_ERRORS = False
    mail.outbox.clear()
    _edit(_provider_client(patient), patient, email="robin.new@example.org")
    assert mail.outbox == []
    log = ReminderLog.objects.get(patient=patient, sent_on=timezone.localdate())
    assert log.status == ReminderLog.Status.PENDING
    ReminderLog.objects.filter(pk=log.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    tasks.invoices_sweep()
    assert [m.to for m in mail.outbox] == [["robin.new@example.org"]]


def test_the_ops_dashboard_lists_bouncing_patients_by_id() -> None:
    patient = _patient("robin@example.org")
    _bounce(patient)
    ops = UserFactory(is_staff=True)
    ops.groups.add(Group.objects.get(name="Ops"))
    page = signed_in(ops).get("/admin/dashboard/").content.decode()
    assert "Emails bouncing (1)" in page and f"patient #{patient.pk}" in page
    assert "robin@example.org" not in page


def test_a_run_on_a_later_day_reminds_again_once_the_email_is_updated() -> None:
    patient = _patient("robin@example.org")
    _issued(patient, days_ago=3)
    _bounce(patient)
    reminders_run(as_of=timezone.localdate())
    assert ReminderLog.objects.get().status == ReminderLog.Status.SKIPPED
    mail.outbox.clear()
    _edit(_provider_client(patient), patient, email="robin.new@example.org")
    assert [m.to for m in mail.outbox] == [["robin.new@example.org"]]  # today's skipped row, re-armed and sent
    assert ReminderLog.objects.get().status == ReminderLog.Status.SENT


# --- configuration ---


def _settings_with(**env: str) -> Any:
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "import django; django.setup(); from django.conf import settings; print(settings.EMAIL_BACKEND)"
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test", **env}
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=full_env, capture_output=True, text=True)


def test_email_provider_mailgun_uses_anymail_and_fails_fast_without_its_keys() -> None:
    missing = _settings_with(EMAIL_PROVIDER="mailgun", MAILGUN_API_KEY="", MAILGUN_WEBHOOK_SIGNING_KEY="")
    assert missing.returncode != 0 and "needs MAILGUN_API_KEY and MAILGUN_WEBHOOK_SIGNING_KEY" in missing.stderr
    unknown = _settings_with(EMAIL_PROVIDER="carrier-pigeon")
    assert unknown.returncode != 0 and "EMAIL_PROVIDER must be 'mailgun'" in unknown.stderr
    ok = _settings_with(EMAIL_PROVIDER="mailgun", MAILGUN_API_KEY="api-words", MAILGUN_WEBHOOK_SIGNING_KEY="signing")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "anymail.backends.mailgun.EmailBackend"


# --- the email service refusing or not answering a reminder (EMAIL_PROVIDER=mailgun) ---


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(400, ReminderLog.Status.PENDING), (503, ReminderLog.Status.PENDING), (None, ReminderLog.Status.IN_DOUBT)],
    ids=["refused-400", "down-503", "read-timeout"],
)
def test_a_mailgun_refusal_leaves_the_reminder_to_the_next_run_and_a_timeout_puts_it_in_doubt(
    settings: Any, monkeypatch: pytest.MonkeyPatch, status: int | None, outcome: str
) -> None:
    import requests
    from anymail.backends.mailgun import EmailBackend

    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": "api-words", "MAILGUN_SENDER_DOMAIN": "alma.invalid"}

    def answer(self: Any, **params: Any) -> requests.Response:
        if status is None:
            raise requests.ReadTimeout("read timed out")
        response = requests.Response()
        response.status_code, response._content = status, b'{"message": "nope"}'
        response.url = params["url"]
        return response

    monkeypatch.setattr(requests.Session, "request", answer)
    assert EmailBackend  # the real anymail backend, with only the HTTP answer stubbed
    patient = _patient("robin@example.org")
    _issued(patient, days_ago=3)
    summary = reminders_run(as_of=timezone.localdate())
    assert summary.reminded == 0
    assert ReminderLog.objects.get(patient=patient).status == outcome
    assert (summary.failures, summary.in_doubt_now) == ((1, 0) if status else (0, 1))
