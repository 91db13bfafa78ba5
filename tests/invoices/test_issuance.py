"""P1, P2 and P9 through the real services: sessions completed, invoices issued once and emailed discreetly."""

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from alma_billing.core.errors import ServiceError
from alma_billing.core.models import AuditEvent
from invoices import services
from invoices.explain import explanation_lines
from invoices.models import EapAuthorization, EligibilitySnapshot, Invoice, TherapySession
from invoices.tasks import invoices_sweep
from tests.factories import (
    CoverageFactory,
    EapAuthorizationFactory,
    EligibilitySnapshotFactory,
    TherapySessionFactory,
    insured_session,
)

pytestmark = pytest.mark.django_db(transaction=False)

THERAPY_WORDS = re.compile(r"therap|counsel|psych|mental|diagnos|session|behavior|EAP|Dr\.", re.IGNORECASE)


def complete(session: TherapySession, django_capture_on_commit_callbacks) -> Invoice | None:
    with django_capture_on_commit_callbacks(execute=True):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
    return Invoice.objects.filter(session=session).first()


def test_p1_completing_a_session_issues_one_invoice_and_emails_a_link(django_capture_on_commit_callbacks) -> None:
    session = insured_session(
        allowed_amount_cents=15_000, plan_coinsurance_bp=2000, plan_deductible_remaining_cents=5_000
    )

    invoice = complete(session, django_capture_on_commit_callbacks)

    assert invoice is not None
    assert invoice.amount_cents == 7_000  # $50 deductible + 20% of $100
    assert invoice.number == f"INV-{invoice.pk:07d}"
    assert invoice.emailed_at is not None
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == [session.patient.email]
    assert re.search(r"/pay/[A-Za-z0-9_-]{43}/", str(email.body))
    assert AuditEvent.objects.filter(action="invoice.issued", object_id=str(invoice.pk)).exists()


def test_p1_invoice_email_is_discreet_in_both_parts(django_capture_on_commit_callbacks) -> None:
    session = insured_session()
    complete(session, django_capture_on_commit_callbacks)

    email = mail.outbox[0]
    html = email.alternatives[0][0]  # type: ignore[union-attr]
    assert email.subject == "You have a new invoice from Alma"
    for text in (email.subject, email.body, html):
        assert not THERAPY_WORDS.search(str(text)), text
        assert session.provider.display_name not in str(text)
        assert "$" not in str(text)  # no amount outside the verified page


def test_p1_issuing_again_changes_nothing(django_capture_on_commit_callbacks) -> None:
    session = insured_session()
    first = complete(session, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        again = services.invoice_issue(session_id=session.pk)
        services.session_complete(session_id=session.pk, actor=SYSTEM)

    assert again == first
    assert Invoice.objects.count() == 1
    assert len(mail.outbox) == 1


def test_p1_a_scheduled_session_is_not_billed() -> None:
    session = insured_session()
    with pytest.raises(ServiceError):
        services.invoice_issue(session_id=session.pk)
    assert not Invoice.objects.exists()


def test_p1_a_canceled_session_cannot_be_completed() -> None:
    session = insured_session(status=TherapySession.Status.CANCELED)
    with pytest.raises(ServiceError, match="canceled"):
        services.session_complete(session_id=session.pk, actor=SYSTEM)


def test_p1_provider_charges_a_self_pay_invoice(django_capture_on_commit_callbacks) -> None:
    session = TherapySessionFactory(status=TherapySession.Status.COMPLETED)  # flagged: no coverage at all
    services.invoice_issue(session_id=session.pk)
    session.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NEEDS_ATTENTION

    with django_capture_on_commit_callbacks(execute=True):
        invoice = services.invoice_charge_self_pay(session_id=session.pk, amount_cents=17_500, actor=SYSTEM)

    assert invoice.amount_cents == 17_500 and invoice.kind == Invoice.Kind.SELF_PAY
    assert explanation_lines(invoice.calculation) == ["Self-pay rate for this visit: $175.00."]
    assert len(mail.outbox) == 1
    with pytest.raises(ServiceError, match="already has an invoice"):
        services.invoice_charge_self_pay(session_id=session.pk, amount_cents=100, actor=SYSTEM)
    with pytest.raises(ServiceError, match="more than"):
        services.invoice_charge_self_pay(session_id=session.pk, amount_cents=0, actor=SYSTEM)


def test_p1_patient_without_email_is_reported_not_retried_forever(django_capture_on_commit_callbacks) -> None:
    session = insured_session(patient__email="")
    invoice = complete(session, django_capture_on_commit_callbacks)
    assert invoice is not None
    assert invoice.emailed_at is None
    assert invoice.email_problem == "The patient has no email address on file."
    assert not mail.outbox


def test_p1_sweep_bills_a_session_whose_task_was_lost(settings, django_capture_on_commit_callbacks) -> None:
    settings.ISSUE_SWEEP_GRACE = timedelta(minutes=2)
    lost = insured_session(status=TherapySession.Status.COMPLETED, completed_at=timezone.now() - timedelta(hours=1))
    just_now = insured_session(status=TherapySession.Status.COMPLETED, completed_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        result = invoices_sweep.apply().get()

    assert result["billed"] == 1
    assert Invoice.objects.get(session=lost).emailed_at is not None
    assert not Invoice.objects.filter(session=just_now).exists()  # its own task is probably still on the way
    assert len(mail.outbox) == 1


def test_p1_sweep_emails_an_invoice_whose_email_task_was_lost(settings) -> None:
    settings.ISSUE_SWEEP_GRACE = timedelta(0)
    session = insured_session(status=TherapySession.Status.COMPLETED, completed_at=timezone.now())
    services.invoice_issue(session_id=session.pk)  # on_commit never runs here: the email task is "lost"
    assert not mail.outbox

    assert invoices_sweep.apply().get() == {"billed": 0, "emailed": 1, "reminded": 0}
    assert invoices_sweep.apply().get() == {"billed": 0, "emailed": 0, "reminded": 0}
    assert len(mail.outbox) == 1


def test_p2_uses_most_recent_completed_check_on_or_before_the_session(django_capture_on_commit_callbacks) -> None:
    session = TherapySessionFactory(date_of_service=timezone.localdate() - timedelta(days=10))
    coverage = CoverageFactory(patient=session.patient)
    now = timezone.now()
    EligibilitySnapshotFactory(coverage=coverage, checked_at=now - timedelta(days=60), copay_cents=1_000)
    chosen = EligibilitySnapshotFactory(coverage=coverage, checked_at=now - timedelta(days=20), copay_cents=2_500)
    EligibilitySnapshotFactory(  # more recent but failed: ignored
        coverage=coverage,
        checked_at=now - timedelta(days=15),
        copay_cents=9_000,
        status=EligibilitySnapshot.Status.FAILED,
    )
    EligibilitySnapshotFactory(coverage=coverage, checked_at=now - timedelta(days=2), copay_cents=4_000)  # after

    invoice = complete(session, django_capture_on_commit_callbacks)

    assert invoice is not None and invoice.eligibility_snapshot == chosen
    assert invoice.amount_cents == 2_500
    lines = explanation_lines(invoice.calculation)
    assert "Your copay: $25.00." in lines and lines[-1] == "You owe: $25.00."


def test_p2_explanation_shows_deductible_and_coinsurance_arithmetic(django_capture_on_commit_callbacks) -> None:
    session = insured_session(
        allowed_amount_cents=15_000, plan_coinsurance_bp=2000, plan_deductible_remaining_cents=5_000
    )
    invoice = complete(session, django_capture_on_commit_callbacks)
    assert invoice is not None
    lines = explanation_lines(invoice.calculation)
    assert "Amount your plan allows for this visit: $150.00." in lines
    assert "Toward your deductible: $50.00 (deductible remaining was $50.00)." in lines
    assert "Your coinsurance: 20% of $100.00 = $20.00 (rounded to the nearest cent)." in lines
    assert lines[-1] == "You owe: $70.00."


def test_p2_two_sessions_on_one_check_do_not_spend_the_deductible_twice(django_capture_on_commit_callbacks) -> None:
    first = insured_session(
        allowed_amount_cents=15_000, plan_coinsurance_bp=2000, plan_deductible_remaining_cents=20_000
    )
    second = TherapySessionFactory(patient=first.patient, provider=first.provider, allowed_amount_cents=15_000)

    one = complete(first, django_capture_on_commit_callbacks)
    two = complete(second, django_capture_on_commit_callbacks)

    assert one is not None and two is not None
    assert one.amount_cents == 15_000  # all deductible
    assert two.amount_cents == 5_000 + 2_000  # the last $50 of deductible, then 20% of $100
    assert "($150.00 already applied to earlier visits)" in " ".join(explanation_lines(two.calculation))


def test_p2_out_of_pocket_max_counts_earlier_invoices(django_capture_on_commit_callbacks) -> None:
    first = insured_session(allowed_amount_cents=15_000, plan_copay_cents=3_000, plan_oop_max_remaining_cents=4_000)
    second = TherapySessionFactory(patient=first.patient, provider=first.provider, allowed_amount_cents=15_000)
    complete(first, django_capture_on_commit_callbacks)
    two = complete(second, django_capture_on_commit_callbacks)
    assert two is not None and two.amount_cents == 1_000
    assert "Capped at your remaining out-of-pocket maximum of $10.00." in explanation_lines(two.calculation)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("no_coverage", "No active insurance coverage"),
        ("no_check", "No completed eligibility check on or before"),
        ("only_later_check", "No completed eligibility check on or before"),
        ("inactive", "The plan was inactive"),
    ],
)
def test_p2_no_invoice_is_guessed_the_session_is_flagged(
    setup: str, reason: str, django_capture_on_commit_callbacks
) -> None:
    session = TherapySessionFactory()
    if setup != "no_coverage":
        coverage = CoverageFactory(patient=session.patient)
        if setup == "only_later_check":
            EligibilitySnapshotFactory(coverage=coverage, checked_at=timezone.now() + timedelta(days=1))
        if setup == "inactive":
            EligibilitySnapshotFactory(coverage=coverage, plan_active=False)

    assert complete(session, django_capture_on_commit_callbacks) is None

    session.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NEEDS_ATTENTION
    assert reason in session.billing_note
    assert not mail.outbox
    assert AuditEvent.objects.filter(action="session.needs_attention", object_id=str(session.pk)).exists()


def test_p2_nothing_owed_makes_no_invoice(django_capture_on_commit_callbacks) -> None:
    session = insured_session(plan_coinsurance_bp=None, plan_copay_cents=None)
    assert complete(session, django_capture_on_commit_callbacks) is None
    session.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NO_CHARGE


@pytest.mark.parametrize("program", [EapAuthorization.Program.OPTUM_LWW, EapAuthorization.Program.OPTUM_EWS])
def test_p9_optum_eap_session_within_authorization_costs_nothing(
    program: str, django_capture_on_commit_callbacks
) -> None:
    auth = EapAuthorizationFactory(program=program, sessions_authorized=2)
    session = TherapySessionFactory(patient=auth.patient, billing_type=TherapySession.BillingType.EAP)

    assert complete(session, django_capture_on_commit_callbacks) is None

    session.refresh_from_db()
    auth.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NO_CHARGE
    assert session.eap_authorization == auth
    assert auth.sessions_used == 1
    assert "EAP session 1 of 2" in session.billing_note
    assert not mail.outbox
    # Billing the same session again does not use a second authorized session.
    services.invoice_issue(session_id=session.pk)
    auth.refresh_from_db()
    assert auth.sessions_used == 1


def test_p9_other_eaps_are_refused_with_a_reason(django_capture_on_commit_callbacks) -> None:
    auth = EapAuthorizationFactory(program=EapAuthorization.Program.OTHER, program_name="Acme EAP")
    session = TherapySessionFactory(
        patient=auth.patient, billing_type=TherapySession.BillingType.EAP, eap_authorization=auth
    )
    assert complete(session, django_capture_on_commit_callbacks) is None
    session.refresh_from_db()
    auth.refresh_from_db()
    assert session.billing_outcome == TherapySession.Outcome.NEEDS_ATTENTION
    assert "EAP 'Acme EAP' is not in network" in session.billing_note
    assert "Optum Live & Work Well EAP and Optum Emotional Wellbeing Solutions" in session.billing_note
    assert auth.sessions_used == 0


def test_p9_past_the_authorization_the_session_is_billed_as_insurance(django_capture_on_commit_callbacks) -> None:
    auth = EapAuthorizationFactory(sessions_authorized=1, sessions_used=1)
    session = insured_session(
        patient=auth.patient,
        billing_type=TherapySession.BillingType.EAP,
        allowed_amount_cents=15_000,
        plan_copay_cents=2_000,
    )
    invoice = complete(session, django_capture_on_commit_callbacks)
    assert invoice is not None and invoice.amount_cents == 2_000 and invoice.kind == Invoice.Kind.INSURANCE


def test_p9_expired_authorization_falls_back_to_self_pay(django_capture_on_commit_callbacks) -> None:
    day = timezone.localdate()
    auth = EapAuthorizationFactory(valid_from=day - timedelta(days=90), valid_until=day - timedelta(days=31))
    session = TherapySessionFactory(
        patient=auth.patient,
        billing_type=TherapySession.BillingType.EAP,
        eap_authorization=auth,
        allowed_amount_cents=None,
        self_pay_rate_cents=12_000,
    )
    invoice = complete(session, django_capture_on_commit_callbacks)
    assert invoice is not None and invoice.amount_cents == 12_000 and invoice.kind == Invoice.Kind.SELF_PAY


@pytest.mark.django_db(transaction=True)
def test_p1_concurrent_issuance_makes_one_invoice(postgres: None) -> None:
    """Two workers bill the same session at once on PostgreSQL: one invoice, one email."""
    session = insured_session(status=TherapySession.Status.COMPLETED, completed_at=timezone.now())
    barrier = threading.Barrier(2)
    results: list[object] = []

    def bill() -> None:
        try:
            barrier.wait()
            results.append(services.invoice_issue(session_id=session.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=bill) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Invoice.objects.filter(session=session).count() == 1
    assert len({getattr(r, "pk", None) for r in results}) == 1
