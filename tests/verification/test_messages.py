"""Issue 11: what the phone and code pages say before, at and after a lock, and where dead ends lead.

The limits count per patient across all of their links and IPs: the messages say how many tries are left from
those real counters, the lock message comes on the very try that locks and names the whole account, and a locked
page has no form to fill in.
"""

import html
import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from invoices.models import Invoice
from payments.models import Payment
from tests.factories import InvoiceFactory, PatientFactory, PaymentFactory
from tests.verification.helpers import link_for, texted_codes, verify
from verification.models import AccessAttempt

pytestmark = pytest.mark.django_db

WRONG = "(617) 555-0100"
RIGHT = "(202) 555-0143"


def text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


def has_form(page: str, field: str) -> bool:
    return f'name="{field}"' in page


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(amount_cents=12_345, session__patient__phone="+12025550143")


def test_each_wrong_phone_says_how_many_tries_are_left_counted_across_links_and_ips(invoice: Invoice) -> None:
    links = [link_for(invoice), link_for(invoice)]
    said = []
    for n in range(4):
        response = Client().post(links[n % 2], {"phone": WRONG}, REMOTE_ADDR=f"198.51.100.{n + 1}")
        assert response.status_code == 400
        said.append(text(response))
    assert "You have 4 tries left before your account is locked for 30 minutes." in said[0]
    assert "You have 3 tries left" in said[1] and "You have 2 tries left" in said[2]
    assert "You have 1 try left before your account is locked" in said[3]
    assert all("doesn't match the phone number on your profile" in page for page in said)


def test_the_wrong_phone_that_locks_says_so_at_once_names_the_account_and_shows_no_form(invoice: Invoice) -> None:
    url = link_for(invoice)
    for _ in range(4):
        Client().post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")

    response = Client().post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")

    page = text(response)
    assert response.status_code == 429
    assert "your Alma billing account is locked" in page and "not only this one" in page
    assert "this invoice is locked" not in page and "try again" in page.lower()
    assert "Please try again in 30 minutes, or contact your provider" in page
    assert not has_form(page, "phone") and ">Continue</button>" not in page
    assert re.search(r'<div class="alert" id="locked-message" role="alert" tabindex="-1" autofocus>', page)


def test_a_locked_link_opened_again_shows_the_lock_and_when_it_lifts_not_a_form(invoice: Invoice) -> None:
    url = link_for(invoice)
    start = timezone.now()
    for _ in range(5):
        Client().post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")

    with time_machine.travel(start + timedelta(minutes=10)):
        response = Client().get(link_for(invoice))  # another link of the same patient, another browser
    page = text(response)
    assert response.status_code == 429
    assert "try again in 20 minutes" in page and not has_form(page, "phone")

    with time_machine.travel(start + timedelta(minutes=31)):
        response = Client().get(url)
        assert response.status_code == 200 and has_form(text(response), "phone")
        verify(Client(), url)


def test_a_right_phone_while_locked_changes_nothing_and_texts_nothing(invoice: Invoice) -> None:
    url = link_for(invoice)
    for _ in range(5):
        Client().post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")
    before = AccessAttempt.objects.count()

    response = Client().post(url, {"phone": RIGHT}, REMOTE_ADDR="203.0.113.20")

    assert response.status_code == 429 and "account is locked" in text(response)
    assert texted_codes() == [] and AccessAttempt.objects.count() == before


def test_each_wrong_code_says_how_many_checks_are_left_and_the_fifth_locks_without_a_form(invoice: Invoice) -> None:
    client = Client()
    client.post(link_for(invoice), {"phone": RIGHT}, REMOTE_ADDR="198.51.100.9")
    wrong = f"{(int(texted_codes()[-1]) + 1) % 1_000_000:06d}"

    pages = [text(client.post("/pay/code/", {"code": wrong}, REMOTE_ADDR="198.51.100.9")) for _ in range(4)]
    assert "You have 4 code checks left before your account is locked for 30 minutes." in pages[0]
    assert "You have 1 code check left" in pages[3]
    assert 'id="code-error" role="alert" tabindex="-1" autofocus' in pages[3]

    response = client.post("/pay/code/", {"code": wrong}, REMOTE_ADDR="198.51.100.9")
    page = text(response)
    assert response.status_code == 429 and "account is locked" in page and "try again in 30 minutes" in page
    assert not has_form(page, "code") and ">Verify</button>" not in page and "Send a new code" not in page
    # The code page opened again (reload) is the lock as well, and asking for a new code texts nothing.
    assert not has_form(text(client.get("/pay/code/")), "code")
    sent = len(texted_codes())
    assert client.post("/pay/code/resend/", REMOTE_ADDR="198.51.100.9").status_code == 429
    assert len(texted_codes()) == sent


def test_hostile_phone_input_is_explained_and_never_counted(invoice: Invoice) -> None:
    url = link_for(invoice)
    for junk in ["2025550143\x00", "x" * 10_000, "🙂" * 20, "ｘｙｚ", "", "   "]:
        response = Client().post(url, {"phone": junk}, REMOTE_ADDR="198.51.100.9")
        assert response.status_code == 400
        assert "tries left" not in text(response)
    assert not AccessAttempt.objects.filter(kind="phone").exists()
    verify(Client(), url)


def test_too_many_codes_sent_keeps_the_code_form_usable(invoice: Invoice) -> None:
    client = Client()
    client.post(link_for(invoice), {"phone": RIGHT}, REMOTE_ADDR="198.51.100.9")
    for _ in range(4):
        client.post("/pay/code/resend/", REMOTE_ADDR="198.51.100.9")
    response = client.post("/pay/code/resend/", REMOTE_ADDR="198.51.100.9")
    page = text(response)
    assert response.status_code == 429 and "wait 10 minutes" in page and has_form(page, "code")
    assert client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR="198.51.100.9").status_code == 302


def test_the_lock_message_and_tries_left_are_in_spanish(invoice: Invoice) -> None:
    url = link_for(invoice)
    client = Client(HTTP_ACCEPT_LANGUAGE="es")
    first = text(client.post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9"))
    assert "Le quedan 4 intentos" in first
    for _ in range(4):
        last = client.post(url, {"phone": WRONG}, REMOTE_ADDR="198.51.100.9")
    page = text(last)
    assert last.status_code == 429 and "su cuenta" in page and "30 minutos" in page
    assert "is locked" not in page and "try again" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/pay/invoices/NOPE-1/",
        "/pay/payments/999999/",
        "/pay/payments/999999/retry/",
        "/pay/payments/999999/receipt.pdf",
    ],
)
def test_not_found_pages_lead_back_to_the_invoices_and_show_support(settings, invoice: Invoice, path: str) -> None:
    settings.SUPPORT_EMAIL = "help@alma.example"
    client = Client()
    verify(client, link_for(invoice))
    response = client.get(path)
    page = text(response)
    assert response.status_code == 404
    assert '<a class="button" href="/pay/invoices/">Back to your invoices</a>' in page
    assert "help@alma.example" in page


def test_another_patients_invoice_and_payment_are_dead_ends_that_reveal_nothing(invoice: Invoice) -> None:
    other = InvoiceFactory(amount_cents=55_500, session__patient=PatientFactory(phone="+12025550188"))
    payment = PaymentFactory(
        patient=other.patient, amount_cents=55_500, attempt_key="k" * 32, status=Payment.Status.SUCCEEDED
    )
    client = Client()
    verify(client, link_for(invoice))
    for path in (
        f"/pay/invoices/{other.number}/",
        f"/pay/payments/{payment.pk}/",
        f"/pay/payments/{payment.pk}/retry/",
    ):
        response = client.get(path)
        page = text(response).split('<main class="page">')[1]  # (the language switch repeats the typed URL)
        assert response.status_code == 404 and "Back to your invoices" in page
        assert "555.00" not in page and other.patient.last_name not in page and other.number not in page
