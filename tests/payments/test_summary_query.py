"""The summary reads its invoices, receipts and autopay practices in one PostgreSQL statement
(payments.selectors.pay_summary_for): it must read exactly what the three selectors it stands for read."""

import datetime
import itertools
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from claims.models import Claim
from invoices.models import Invoice, Practice
from payments.models import Payment, PaymentAllocation
from payments.selectors import pay_summary_for, pay_summary_from_selectors
from tests.factories import InvoiceFactory, PatientFactory, PracticeFactory, ProviderFactory

pytestmark = pytest.mark.django_db
_serial = itertools.count(1)


def _invoice(patient: Any, days_ago: int, status: str = Invoice.Status.OPEN, **kwargs: Any) -> Invoice:
    return InvoiceFactory(
        session__patient=patient,
        session__date_of_service=timezone.localdate() - datetime.timedelta(days=days_ago),
        status=status,
        **kwargs,
    )


def _payment(patient: Any, invoices: list[Invoice], *, days_ago: int, state: str, refunded: int = 0) -> Payment:
    n = next(_serial)
    payment = Payment.objects.create(
        patient=patient,
        amount_cents=sum(i.amount_cents for i in invoices),
        status=Payment.Status.SUCCEEDED,
        attempt_key=f"summary-query-{n}",
        stripe_payment_intent_id=f"pi_summary_query_{n}",
        card_brand="mastercard",
        card_last4="4444",
        refunded_cents=refunded,
        succeeded_at=timezone.now() - datetime.timedelta(days=days_ago),
    )
    for invoice in invoices:
        PaymentAllocation.objects.create(
            payment=payment, invoice=invoice, amount_cents=invoice.amount_cents, state=state
        )
    return payment


def test_the_one_summary_query_reads_what_the_three_selectors_read(patient: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the one-query summary is PostgreSQL's; elsewhere pay_summary_for is the three selectors")
    # Open and processing invoices, one credited, one an adjustment, three with claims in each decision state.
    required = ProviderFactory(practice=PracticeFactory(autopay_policy=Practice.AutopayPolicy.REQUIRED))
    optional = ProviderFactory(practice=PracticeFactory(autopay_policy=Practice.AutopayPolicy.OPTIONAL))
    plain = _invoice(patient, 90, session__provider=required)
    credited = _invoice(patient, 80, amount_cents=9_000, credited_cents=2_500, session__provider=optional)
    confirmed = _invoice(patient, 70, kind=Invoice.Kind.INSURANCE)
    adjusted = _invoice(patient, 60, kind=Invoice.Kind.INSURANCE)
    waiting = _invoice(patient, 50, Invoice.Status.PROCESSING, kind=Invoice.Kind.INSURANCE)
    adjustment = _invoice(patient, 40, kind=Invoice.Kind.ADJUSTMENT)
    decided = timezone.now() - datetime.timedelta(days=3)
    Claim.objects.create(session=confirmed.session, claim_number="ALMA-Q-1", status="confirmed", decided_at=decided)
    Claim.objects.create(session=adjusted.session, claim_number="ALMA-Q-2", status="adjusted", decided_at=decided)
    Claim.objects.create(session=waiting.session, claim_number="ALMA-Q-3")
    Claim.objects.create(session=adjustment.session, claim_number="ALMA-Q-4", status="adjusted", decided_at=decided)
    # Receipts: two listed (one partly refunded), one too old, one that settled nothing, and nothing of others'.
    paid = [_invoice(patient, 400 + d, Invoice.Status.PAID) for d in range(5)]
    _payment(patient, paid[:2], days_ago=10, state=PaymentAllocation.State.SETTLED, refunded=1_000)
    _payment(patient, paid[2:3], days_ago=5, state=PaymentAllocation.State.SETTLED)
    _payment(patient, paid[3:4], days_ago=800, state=PaymentAllocation.State.SETTLED)
    _payment(patient, paid[4:], days_ago=2, state=PaymentAllocation.State.RELEASED)
    other = PatientFactory(phone="+12025550188")
    _invoice(other, 30)
    _payment(other, [_invoice(other, 300, Invoice.Status.PAID)], days_ago=1, state=PaymentAllocation.State.SETTLED)

    folded = pay_summary_for(patient_id=patient.pk)

    assert folded == pay_summary_from_selectors(patient_id=patient.pk)
    assert [line.id for line in folded.payable] == [plain.pk, credited.pk, confirmed.pk, adjusted.pk, adjustment.pk]
    assert [line.id for line in folded.processing] == [waiting.pk]
    assert [line.claim_status for line in folded.payable] == ["", "", "confirmed", "adjusted", "adjusted"]
    assert [line.paid_cents for line in folded.receipts] == [paid[2].amount_cents, 2 * paid[0].amount_cents]
    assert {p.id for p in folded.practices} == {required.practice_id, optional.practice_id}  # not the "off" ones
    assert [p.name for p in folded.practices] == sorted(p.name for p in folded.practices)
    assert folded.total_cents == sum(i.owed_cents for i in (plain, credited, confirmed, adjusted, adjustment))
