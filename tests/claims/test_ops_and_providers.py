"""P13 for staff: the ops dashboard counts what waits (denials, unsettled claims, refunds Stripe has not made,
open adjustments, credits); the remittance list gives each claim's outcome; a provider sees only their own claims
and their remittance lines, never a remittance file (it names other providers' claims)."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client

from alma_billing.core.audit import SYSTEM
from claims.models import Claim, ClaimPayment
from claims.samples import Clp, build_835
from claims.services import remittance_import
from invoices import services
from invoices.models import Invoice
from payments.models import Refund
from tests.claims.flows import ESTIMATE, run
from tests.factories import ProviderFactory, UserFactory, insured_session
from tests.payments import stripe_fake
from tests.payments.flows import pay, verified_client
from tests.staff import signed_in

pytestmark = pytest.mark.django_db


def billed_claim(**session: Any) -> tuple[Claim, Invoice]:
    made = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000, **session)
    services.session_complete(session_id=made.pk, actor=SYSTEM)
    invoice = services.invoice_issue(session_id=made.pk)
    assert invoice is not None
    return Claim.objects.get(session=made), invoice


def ops_client() -> Client:
    return signed_in(get_user_model().objects.create_superuser("ops-claims", "ops@example.com", "pw"))


def test_p13_the_dashboard_counts_what_waits_and_a_refund_stripe_missed_is_made_by_the_next_import(
    billed, tmp_path: Path, stripe_api, settings, django_capture_on_commit_callbacks
) -> None:
    paid_claim, paid_invoice = billed
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(verified_client(paid_invoice), "all")["status"] == "succeeded"
    denied, _ = billed_claim()
    more, _ = billed_claim()
    less, _ = billed_claim()
    mail.outbox.clear()

    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable: nothing listens there
    summary = remittance_import(
        raw_text=build_835(
            [
                Clp(paid_claim.claim_number, responsibility_cents=1_000, payer_claim_number="A"),
                Clp(denied.claim_number, status="4", paid_cents=0, responsibility_cents=0, payer_claim_number="B"),
                Clp(more.claim_number, responsibility_cents=5_000, payer_claim_number="C"),
                Clp(less.claim_number, responsibility_cents=500, payer_claim_number="D"),
            ]
        )
    )
    assert (summary.refunded, summary.denied, summary.adjusted_up, summary.reduced) == (1, 1, 1, 1)
    assert summary.refunds_waiting == 1
    assert not Refund.objects.exists()
    assert not [m for m in mail.outbox if m.subject == "A refund from Alma"]  # no refund notice before a refund
    page = verified_client(paid_invoice).get("/pay/invoices/").content.decode()
    assert "Refunded to your card" not in page  # never said before Stripe made it

    ops = ops_client()
    dashboard = ops.get("/admin/dashboard/").content.decode()
    assert "1 denied claim(s) waiting for a person" in dashboard
    assert "0 other claim(s) the import could not settle" in dashboard
    assert "1 refund(s) of $20.00 decided and waiting for Stripe" in dashboard
    assert "1 adjustment invoice(s) open</a>, $20.00 in all" in dashboard
    assert "1 open invoice(s) reduced by a credit" in dashboard

    settings.STRIPE_API_BASE = stripe_api  # Stripe is back: the next import makes the refund, once
    later = remittance_import(raw_text=build_835([Clp("NOTOURS1")], trace="EFT-LATER"))
    assert later.refunds_waiting == 0
    refund = Refund.objects.get()
    assert refund.amount_cents == 2_000 and ClaimPayment.objects.get(claim=paid_claim).refund == refund
    assert stripe_fake.client().v1.refunds.retrieve(str(refund.stripe_refund_id)).amount == 2_000
    assert "0 refund(s) of $0.00 decided and waiting" in ops.get("/admin/dashboard/").content.decode()
    page = verified_client(paid_invoice).get("/pay/invoices/").content.decode()
    assert "Refunded to your card: $20.00." in page


def test_p13_the_remittance_list_gives_each_claims_outcome(billed, tmp_path: Path) -> None:
    claim, _ = billed
    run(
        tmp_path,
        build_835([Clp(claim.claim_number, responsibility_cents=ESTIMATE), Clp("NOTOURS1", payer_claim_number="X")]),
    )
    listed = ops_client().get("/admin/claims/remittance/").content.decode()
    assert f"{claim.claim_number}: Confirmed: the estimate was right" in listed
    assert "NOTOURS1: Unmatched: no such claim" in listed


def _provider(username: str) -> Any:
    provider = ProviderFactory(user=UserFactory(username=username, is_staff=True))
    provider.user.groups.add(Group.objects.get(name="Providers"))
    return provider


def test_p13_a_provider_sees_only_their_own_claims_and_remittance_lines(tmp_path: Path) -> None:
    alpha, bravo = _provider("dr-alpha-claims"), _provider("dr-bravo-claims")
    mine, _ = billed_claim(provider=alpha)
    theirs, _ = billed_claim(provider=bravo)
    run(
        tmp_path,
        build_835(
            [
                Clp(mine.claim_number, responsibility_cents=1_000, payer_claim_number="PCN-MINE"),
                Clp(theirs.claim_number, status="4", paid_cents=0, responsibility_cents=0, payer_claim_number="PCN-B"),
            ]
        ),
    )
    client = signed_in(alpha.user)
    response = client.get("/admin/claims/claim/")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    listed = response.content.decode()
    assert mine.claim_number in listed and theirs.claim_number not in listed
    assert client.get(f"/admin/claims/claim/?q={theirs.claim_number}").context["cl"].result_count == 0
    page = client.get(f"/admin/claims/claim/{mine.pk}/change/").content.decode()
    assert "PCN-MINE" in page and "Reduced" in page and "PCN-B" not in page
    assert client.get(f"/admin/claims/claim/{theirs.pk}/change/").status_code in (302, 404)
    assert client.get("/admin/claims/remittance/").status_code in (302, 403)
    remittance_id = ClaimPayment.objects.get(claim=theirs).remittance_id
    assert client.get(f"/admin/claims/remittance/{remittance_id}/change/").status_code in (302, 403)
    assert client.get("/admin/claims/remittance/import/").status_code == 302  # ops only
    assert client.get("/admin/dashboard/").status_code == 403
