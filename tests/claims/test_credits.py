"""P13 "less" on an open invoice: a credit lowers what the patient owes (the issued amount stays), everywhere the
amount is shown or charged; a later decision undoes it; what cannot be settled changes nothing."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from alma_billing.core.models import AuditEvent
from claims.models import Claim, ClaimPayment, InvoiceCredit
from claims.samples import Clp, build_835
from invoices.models import Invoice
from invoices.reminders import reminders_run
from payments.models import Payment, PaymentAllocation, Refund
from tests.claims.flows import ESTIMATE, reversal, run
from tests.payments import stripe_fake
from tests.payments.flows import pay, verified_client

pytestmark = pytest.mark.django_db


def paid_plus_owed(claim: Claim) -> int:
    """What the patient paid for the claim (settled, less refunds) plus what they still owe."""
    invoices = Invoice.objects.filter(session=claim.session)
    allocations = PaymentAllocation.objects.filter(invoice__in=invoices, state=PaymentAllocation.State.SETTLED)
    paid = sum(a.amount_cents - a.refunded_cents for a in allocations)
    return paid + sum(i.owed_cents for i in invoices.filter(status=Invoice.Status.OPEN))


def test_p13_a_credit_lowers_the_summary_and_the_card_is_charged_only_what_is_owed(
    billed, tmp_path: Path, stripe_api, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    out = run(
        tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000, adjustments=[("PR", "3", 1_000)])])
    )
    assert "1 reduced" in out

    client = verified_client(original)
    summary = client.get("/pay/invoices/").content.decode()
    assert 'You owe <strong class="amount">$10.00</strong>' in summary and "Visit on" in summary
    assert "Pay $30.00" not in summary
    with django_capture_on_commit_callbacks(execute=True):
        result = pay(client, "all")
    assert result["status"] == "succeeded"
    payment = Payment.objects.get()
    assert payment.amount_cents == 1_000
    assert stripe_fake.client().v1.payment_intents.retrieve(str(payment.stripe_payment_intent_id)).amount == 1_000
    original.refresh_from_db()
    assert original.status == Invoice.Status.PAID and original.amount_cents == ESTIMATE
    assert paid_plus_owed(claim) == 1_000


def test_p13_a_reversal_undoes_the_credit_and_the_patient_owes_the_estimate_again(billed, tmp_path: Path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)], trace="EFT1"))
    out = run(tmp_path, build_835([reversal(claim, 1_000)], trace="EFT2"))
    assert "1 reversed" in out
    original.refresh_from_db()
    assert original.status == Invoice.Status.OPEN and original.owed_cents == ESTIMATE
    credit = InvoiceCredit.objects.get()
    assert credit.canceled_at is not None and credit.canceled_by == ClaimPayment.objects.latest("id")
    credit_events = AuditEvent.objects.filter(action__startswith="invoice.credit").order_by("id")
    actions = list(credit_events.values_list("action", flat=True))
    assert actions == ["invoice.credited", "invoice.credit_canceled"]
    assert not Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT).exists()  # the credit came back, no new bill

    # The correction then applies, on the same open invoice.
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=2_500, payer_claim_number="P2")], trace="E3"))
    original.refresh_from_db()
    assert original.owed_cents == 2_500 and paid_plus_owed(claim) == 2_500


def test_p13_nothing_owed_on_an_open_invoice_voids_it_and_a_reversal_bills_the_estimate_again(
    billed, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=0)], trace="EFT1"))
    original.refresh_from_db()
    assert original.status == Invoice.Status.VOID and "Nothing left to pay" in original.void_reason
    assert original.amount_cents == ESTIMATE and original.credited_cents == ESTIMATE
    assert "You have no unpaid invoices" in verified_client(original).get("/pay/invoices/details/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        run(tmp_path, build_835([reversal(claim, 0)], trace="EFT2"))
    adjustment = Invoice.objects.get(kind=Invoice.Kind.ADJUSTMENT)
    assert adjustment.status == Invoice.Status.OPEN and adjustment.amount_cents == ESTIMATE
    assert adjustment.adjusts == original
    assert paid_plus_owed(claim) == ESTIMATE
    assert any(m.subject == "You have a new invoice from Alma" for m in mail.outbox)


def test_p13_less_when_part_is_paid_credits_the_open_invoice_and_refunds_the_rest(
    billed, tmp_path: Path, stripe_api, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    with django_capture_on_commit_callbacks(execute=True):
        run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=5_000)], trace="EFT1"))
    adjustment = Invoice.objects.get(kind=Invoice.Kind.ADJUSTMENT)
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(verified_client(original), f"invoice:{adjustment.number}")["status"] == "succeeded"
    mail.outbox.clear()

    # The plan's corrected decision: $10.00. $30.00 is open (credited in full) and $10.00 of the $20.00 paid goes back.
    out = run(
        tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000, payer_claim_number="P2")], trace="E2")
    )
    assert "1 refunded" in out
    original.refresh_from_db()
    assert original.status == Invoice.Status.VOID and original.credited_cents == ESTIMATE
    refund = Refund.objects.get()
    assert refund.amount_cents == 1_000 and refund.invoice == adjustment
    assert stripe_fake.client().v1.refunds.retrieve(str(refund.stripe_refund_id)).amount == 1_000
    assert paid_plus_owed(claim) == 1_000
    assert [m.subject for m in mail.outbox] == ["A refund from Alma"]


def test_p13_less_with_a_payment_in_flight_changes_nothing_and_asks_a_person(billed, tmp_path: Path) -> None:
    claim, original = billed
    Invoice.objects.filter(pk=original.pk).update(status=Invoice.Status.PROCESSING)  # the patient is paying now
    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))
    assert "1 need a person" in out and "0 reduced" in out
    original.refresh_from_db()
    assert original.credited_cents == 0 and original.status == Invoice.Status.PROCESSING
    assert not InvoiceCredit.objects.exists() and not Refund.objects.exists()
    claim.refresh_from_db()
    assert "being paid right now" in claim.attention


def test_p13_reminders_list_what_is_owed_after_the_credit(billed, tmp_path: Path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_250)]))
    Invoice.objects.filter(pk=original.pk).update(issued_at=timezone.now() - timedelta(days=3))
    mail.outbox.clear()
    reminders_run(as_of=timezone.localdate())
    (reminder,) = [m for m in mail.outbox if m.subject.startswith("Reminder")]
    assert "$12.50" in reminder.body and "$30.00" not in reminder.body


def test_p13_a_credit_for_another_patients_claim_number_touches_only_that_claim(billed, tmp_path: Path) -> None:
    from alma_billing.core.audit import SYSTEM
    from invoices import services
    from tests.factories import insured_session

    claim, original = billed
    other = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    services.session_complete(session_id=other.pk, actor=SYSTEM)
    services.invoice_issue(session_id=other.pk)
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))
    other_invoice = Invoice.objects.get(session=other)
    assert other_invoice.credited_cents == 0 and other_invoice.owed_cents == ESTIMATE
    assert InvoiceCredit.objects.get().invoice == original


def test_p13_autopay_charges_what_is_owed_after_a_credit(tmp_path: Path, stripe_api) -> None:
    from alma_billing.core.audit import SYSTEM
    from invoices import services
    from invoices.models import Practice
    from payments import autopay
    from payments.models import AutopayEnrollment
    from tests.factories import AutopayAttemptFactory, ProviderFactory, insured_session
    from tests.payments.flows import enroll

    provider = ProviderFactory(practice__autopay_policy=Practice.AutopayPolicy.OPTIONAL)
    session = insured_session(provider=provider, allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    services.session_complete(session_id=session.pk, actor=SYSTEM)
    invoice = services.invoice_issue(session_id=session.pk)
    assert invoice is not None and invoice.amount_cents == ESTIMATE
    claim = Claim.objects.get(session=session)
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))
    assert enroll(verified_client(invoice))["http"] == 200
    attempt = AutopayAttemptFactory(invoice=invoice, enrollment=AutopayEnrollment.objects.get())
    autopay.autopay_attempt_run(attempt_id=attempt.pk)

    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert [i.amount for i in stripe_fake.intents_for(customer)] == [1_000]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and paid_plus_owed(claim) == 1_000


def test_p13_a_negative_patient_responsibility_changes_nothing_and_asks_a_person(billed, tmp_path: Path) -> None:
    claim, original = billed
    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=-500)]))
    assert "1 need a person" in out and "0 refunded" in out and "0 reduced" in out
    original.refresh_from_db()
    assert original.owed_cents == ESTIMATE and original.status == Invoice.Status.OPEN
    assert not InvoiceCredit.objects.exists() and ClaimPayment.objects.get().refund_cents == 0
    claim.refresh_from_db()
    assert "negative" in claim.attention and claim.plan_responsibility_cents is None


def test_p13_an_amount_too_large_for_any_visit_refuses_the_file_and_changes_nothing(billed, tmp_path: Path) -> None:
    from tests.claims.flows import run_failing

    claim, original = billed
    huge = Clp(claim.claim_number, charge_cents=99_999_999_999_00, responsibility_cents=99_999_999_999_00)
    error = run_failing(tmp_path, build_835([huge]))
    assert "CLP segment" in error and "more than $10,000,000.00" in error
    original.refresh_from_db()
    assert original.owed_cents == ESTIMATE and not ClaimPayment.objects.exists()
    assert Invoice.objects.count() == 1
