"""P13: every insurance session billed to the plan has a claim number, shown to the patient and in the admin."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alma_billing.core.audit import SYSTEM
from claims.models import Claim
from invoices import services
from invoices.models import Invoice, TherapySession
from tests.factories import TherapySessionFactory, insured_session
from tests.payments.flows import verified_client
from tests.staff import staff_login

pytestmark = pytest.mark.django_db


def bill(session: TherapySession, django_capture_on_commit_callbacks) -> Invoice | None:
    with django_capture_on_commit_callbacks(execute=True):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
    session.refresh_from_db()
    return Invoice.objects.filter(session=session).first()


def test_p13_an_insurance_session_gets_one_claim_when_billed(django_capture_on_commit_callbacks) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    assert bill(session, django_capture_on_commit_callbacks) is not None
    services.invoice_issue(session_id=session.pk)  # billed again: still one claim
    claim = Claim.objects.get(session=session)
    assert claim.claim_number == f"ALMA{session.pk:08d}" and claim.status == Claim.Status.SUBMITTED


def test_p13_a_zero_dollar_estimate_still_has_a_claim(django_capture_on_commit_callbacks) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=0, plan_copay_cents=None)
    assert bill(session, django_capture_on_commit_callbacks) is None
    assert session.billing_outcome == TherapySession.Outcome.NO_CHARGE
    assert Claim.objects.filter(session=session).exists()


def test_p13_self_pay_and_flagged_sessions_have_no_claim(django_capture_on_commit_callbacks) -> None:
    self_pay = TherapySessionFactory(billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=9_000)
    no_plan = TherapySessionFactory()  # no coverage on file: flagged, not sent to a plan
    bill(self_pay, django_capture_on_commit_callbacks)
    bill(no_plan, django_capture_on_commit_callbacks)
    assert not Claim.objects.exists()


def test_p13_the_patient_sees_the_claim_number_on_the_summary_and_the_invoice(
    django_capture_on_commit_callbacks,
) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    invoice = bill(session, django_capture_on_commit_callbacks)
    assert invoice is not None
    client = verified_client(invoice)
    number = Claim.objects.get(session=session).claim_number
    assert f"Claim number {number}" in client.get("/pay/invoices/").content.decode()
    assert f"Claim number {number}" in client.get(f"/pay/invoices/{invoice.number}/").content.decode()


def test_p13_ops_see_the_claim_number_on_the_session_and_invoice_pages(
    django_capture_on_commit_callbacks,
) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    invoice = bill(session, django_capture_on_commit_callbacks)
    assert invoice is not None
    client = Client()
    staff_login(client, get_user_model().objects.create_superuser("ops-claims", "ops@example.com", "pw"))
    number = Claim.objects.get(session=session).claim_number
    for url in (
        f"/admin/invoices/therapysession/{session.pk}/change/",
        f"/admin/invoices/invoice/{invoice.pk}/change/",
        f"/admin/claims/claim/{Claim.objects.get().pk}/change/",
    ):
        page = client.get(url).content.decode()
        assert number in page, url


def test_p13_the_receipt_names_the_claim_number(stripe_api, django_capture_on_commit_callbacks) -> None:
    from payments.models import Payment
    from payments.receipts import receipt_pdf
    from tests.payments.flows import pay, pdf_text

    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    invoice = bill(session, django_capture_on_commit_callbacks)
    assert invoice is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(verified_client(invoice), "all")["status"] == "succeeded"
    number = Claim.objects.get(session=session).claim_number
    assert f"Insurance claim number: {number}." in pdf_text(receipt_pdf(Payment.objects.get()))
