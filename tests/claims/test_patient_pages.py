"""P13 as the patient sees it, in English and Spanish: the estimate and the plan's decision line by line, a credit
that lowered an invoice, and a refund under recent payments with its receipt."""

import html
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from claims.samples import Clp, build_835
from invoices.models import Invoice, Patient
from payments.models import Payment
from tests.claims.flows import run
from tests.payments import stripe_fake
from tests.payments.flows import confirm, offer_of, pay, start, verified_client
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db

MORE = [("PR", "1", 2_000), ("PR", "2", 3_000)]


def text(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def spanish(invoice: Invoice) -> Client:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    verify(client, link_for(invoice))
    return client


def test_p13_the_adjustment_shows_the_estimate_the_plans_lines_and_the_difference(billed, tmp_path: Path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=5_000, adjustments=MORE)]))
    adjustment = Invoice.objects.get(kind=Invoice.Kind.ADJUSTMENT)

    page = text(verified_client(original).get(f"/pay/invoices/{adjustment.number}/").content.decode())
    assert "Adjustment from your plan's decision on" in page
    assert "Estimated on" in page and ": $30.00." in page
    assert f"Your plan's decision on claim {claim.claim_number}: you owe $50.00 for this visit." in page
    assert "Deductible: $20.00." in page and "Coinsurance: $30.00." in page and "Difference: $20.00." in page

    page = text(spanish(original).get("/pay/invoices/details/").content.decode())
    assert f"Decisión de su plan sobre la reclamación {claim.claim_number}: usted debe $50.00" in page
    assert "Deducible: $20.00." in page and "Coseguro: $30.00." in page and "Diferencia: $20.00." in page
    assert "Ajuste según la decisión de su plan" in page and "Estimado el" in page
    for english in ["Difference", "Deductible", "Your plan's decision", "Estimated on"]:
        assert english not in page, english


def test_p13_a_credited_invoice_says_what_came_off_and_what_is_owed(billed, tmp_path: Path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000, adjustments=[("PR", "3", 1_000)])]))
    page = text(verified_client(original).get("/pay/invoices/").content.decode())
    assert "You owe $10.00" in page
    assert "Your plan decided you owe less: $20.00 was taken off the $30.00 first billed." in page
    assert "Estimated on" in page and "Updated to your plan's decision on" in page

    page = text(spanish(original).get(f"/pay/invoices/{original.number}/").content.decode())
    assert "Su plan decidió que usted debe menos: se descontaron $20.00 de los $30.00 facturados" in page
    assert "Actualizado según la decisión de su plan" in page
    assert "Your plan decided" not in page


def test_p13_before_the_plan_decides_the_page_says_it_is_an_estimate(billed) -> None:
    _, original = billed
    page = text(verified_client(original).get("/pay/invoices/").content.decode())
    assert "Estimated on" in page and "Your plan has not decided this claim yet" in page
    assert "Confirmed by your plan" not in page


def test_p13_a_refund_shows_under_recent_payments_with_its_receipt_and_a_spanish_notice(
    billed, tmp_path: Path, stripe_api, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    Patient.objects.filter(pk=original.patient_id).update(preferred_language="es")
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(verified_client(original), "all")["status"] == "succeeded"
    mail.outbox.clear()
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))

    (notice,) = mail.outbox
    assert notice.subject == "Un reembolso de Alma" and "$20.00" in notice.body and "reembolsando" in notice.body
    client = verified_client(original)
    page = text(client.get("/pay/invoices/").content.decode())
    assert "Reembolsado a su tarjeta: $20.00. El recibo lo muestra." in page  # the patient reads Spanish
    receipt = re.search(r'href="(/pay/payments/\d+/receipt\.pdf)"', client.get("/pay/invoices/").content.decode())
    assert receipt is not None
    response = client.get(receipt.group(1))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"


def test_p13_a_credited_single_invoice_is_paid_from_the_summary_at_what_is_owed(
    billed, tmp_path: Path, stripe_api: str
) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000, adjustments=[("PR", "3", 1_000)])]))
    client = verified_client(original)
    summary = client.get("/pay/invoices/").content.decode()
    assert "disabled>Pay $10.00</button>" in summary and "Pay $30.00" not in summary

    started = start(client, offer_of(client))[1]
    assert started["status"] == "ready", started
    stripe_fake.save_card(started["setup_id"], stripe_fake.GOOD_CARD)
    result = confirm(
        client,
        {"setup-id": started["setup_id"], "attempt-key": started["attempt_key"], "checkout": started["checkout"]},
    )

    assert result["status"] == "succeeded"
    assert Payment.objects.get().amount_cents == 1_000  # the credit's $20.00 is never charged
    original.refresh_from_db()
    assert original.status == Invoice.Status.PAID and original.amount_cents == 3_000  # the issued amount unchanged
