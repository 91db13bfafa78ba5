"""Claims tests pay and refund through the same localstripe as the payment tests."""

import pytest
from django.core import mail

from alma_billing.core.audit import SYSTEM
from claims.models import Claim
from invoices import services
from invoices.models import Invoice
from tests.claims.flows import ESTIMATE
from tests.factories import insured_session
from tests.payments.conftest import localstripe_url, stripe_api  # noqa: F401


@pytest.fixture
def billed(django_capture_on_commit_callbacks) -> tuple[Claim, Invoice]:
    """A completed insurance session billed at the $30.00 estimate, with its claim."""
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
    invoice = Invoice.objects.get(session=session)
    assert invoice.amount_cents == ESTIMATE
    mail.outbox.clear()
    return Claim.objects.get(session=session), invoice
