"""P8, issue 11: receipts whenever they are needed.

The receipt email links to the receipt through a fresh link (autopay patients too); a patient with nothing open asks
for a link on the public page /pay/receipts/, which answers the same whether or not the address is on file and is
rate-limited per address and per network; past receipts stay listed after verification; the PDF prints any name,
names Alma as the payee and follows the patient's language; no email names the provider or anything clinical.
"""

import re
import threading
import uuid
from datetime import timedelta
from html import unescape as html_unescape
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from invoices.models import Invoice, Patient
from payments import receipts
from payments.models import Payment, PaymentAllocation, ReceiptLinkRequest
from tests.factories import InvoiceFactory, PatientFactory, ProviderFactory
from tests.payments.test_paying import pdf_text
from tests.verification.helpers import link_for, verify
from verification.models import PayLink
from verification.services import pay_link_find

pytestmark = pytest.mark.django_db

PAGE = "/pay/receipts/"
LINK = re.compile(r"/pay/([A-Za-z0-9_-]{43})/")


def paid(
    patient: Patient,
    amount_cents: int = 7_000,
    *,
    days_ago: int = 1,
    source: str = Payment.Source.PATIENT,
    **invoice: Any,
) -> Payment:
    """A payment that went through (as the webhook leaves it), for one invoice of the patient."""
    when = timezone.now() - timedelta(days=days_ago)
    bill = InvoiceFactory(
        session__patient=patient, amount_cents=amount_cents, status=Invoice.Status.PAID, paid_at=when, **invoice
    )
    payment = Payment.objects.create(
        patient=patient,
        amount_cents=amount_cents,
        status=Payment.Status.SUCCEEDED,
        source=source,
        attempt_key=uuid.uuid4().hex,
        card_brand="visa",
        card_last4="4242",
        succeeded_at=when,
    )
    PaymentAllocation.objects.create(
        payment=payment, invoice=bill, amount_cents=amount_cents, state=PaymentAllocation.State.SETTLED
    )
    return payment


def link_in(message: mail.EmailMessage) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return f"/pay/{match.group(1)}/"


def ask(client: Client, email: Any, ip: str = "203.0.113.9", capture: Any = None) -> Any:
    if capture is None:
        return client.post(PAGE, {"email": email}, REMOTE_ADDR=ip)
    with capture(execute=True):
        return client.post(PAGE, {"email": email}, REMOTE_ADDR=ip)


# --- 1. The receipt email carries a fresh link -------------------------------------------------------------------


@pytest.mark.parametrize("source", [Payment.Source.PATIENT, Payment.Source.AUTOPAY])
def test_p8_the_receipt_email_links_to_the_receipt_through_a_fresh_link(source: str) -> None:
    patient = PatientFactory()
    payment = paid(patient, 7_000, source=source)
    assert receipts.receipt_email_send(payment_id=payment.pk)

    [message] = mail.outbox
    assert "secure link in your invoice email" not in message.body
    assert "Download receipt" in message.body and "/pay/receipts/" in message.body
    url = link_in(message)
    link = pay_link_find(url.split("/")[2])
    assert link is not None and link.patient_id == patient.pk and not link.is_expired
    assert url in message.alternatives[0][0]  # type: ignore[index]

    # The link still asks for the phone first (P4), then shows the receipt to download.
    client = Client()
    landing = client.get(url).content.decode()
    assert "Phone number" in landing and "$70.00" not in landing and "Download receipt" not in landing
    verify(client, url)
    summary = client.get("/pay/invoices/").content.decode()
    assert "no unpaid invoices" in summary
    assert f'href="/pay/payments/{payment.pk}/receipt.pdf"' in summary and "Download receipt" in summary
    pdf = client.get(f"/pay/payments/{payment.pk}/receipt.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


def test_p8_a_receipt_email_sent_twice_is_sent_once_with_one_link() -> None:
    payment = paid(PatientFactory())
    assert receipts.receipt_email_send(payment_id=payment.pk)
    assert not receipts.receipt_email_send(payment_id=payment.pk)
    assert len(mail.outbox) == 1 and PayLink.objects.count() == 1


# --- 2. The public page -----------------------------------------------------------------------------------------


def test_the_receipts_page_asks_for_an_email_address_with_the_public_wording() -> None:
    page = Client().get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    assert '<label for="id_email">Email address</label>' in html
    assert ">Send my receipts link</button>" in html
    assert page["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page["Content-Security-Policy"]


def test_a_known_and_an_unknown_address_get_exactly_the_same_answer(
    django_capture_on_commit_callbacks: Any,
) -> None:
    patient = PatientFactory(email="zoe@example.com")
    payment = paid(patient, days_ago=300)
    answers = []
    for address in ("zoe@example.com", "nobody@example.com"):
        client = Client()
        with CaptureQueriesContext(connection) as queries:
            response = ask(client, address, capture=django_capture_on_commit_callbacks)
        follow = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", client.get(response["Location"]).content)
        answers.append((response.status_code, response["Location"], follow, len(queries)))
    known, unknown = answers
    assert known[:3] == unknown[:3]  # status, redirect and the page after it, byte for byte
    assert b"If that address is on file with Alma" in known[2]
    [message] = mail.outbox  # only the address on file got an email
    assert message.to == ["zoe@example.com"] and message.subject == "Your link to your Alma receipts"
    assert "<title>Your link to your Alma receipts</title>" in message.alternatives[0][0]  # type: ignore[index]
    # The link works: phone, code, then the receipt from ten months ago is there to download.
    client = Client()
    verify(client, link_in(message))
    summary = client.get("/pay/invoices/").content.decode()
    assert f"/pay/payments/{payment.pk}/receipt.pdf" in summary


def test_the_request_does_the_same_database_work_for_a_known_and_an_unknown_address() -> None:
    """No timing oracle that is cheap to avoid: the emails go out from the queue, never inside the request."""
    PatientFactory(email="zoe@example.com")
    counts = []
    for address in ("zoe@example.com", "nobody@example.com"):
        with CaptureQueriesContext(connection) as queries:
            assert ask(Client(), address).status_code == 302
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert mail.outbox == []  # the on_commit task did not run inside the request


def test_every_patient_with_the_address_gets_their_own_link_and_case_does_not_matter(
    django_capture_on_commit_callbacks: Any,
) -> None:
    parent = PatientFactory(email="Family@Example.com", first_name="Ana", preferred_language="es")
    child = PatientFactory(email="family@example.com", first_name="Luis")
    PatientFactory(email="other@example.com")
    assert ask(Client(), "  FAMILY@example.COM ", capture=django_capture_on_commit_callbacks).status_code == 302
    by_address = {m.to[0]: m for m in mail.outbox}
    assert sorted(by_address) == ["Family@Example.com", "family@example.com"]  # as each profile has it
    for patient in (parent, child):
        message = by_address[patient.email]
        link = pay_link_find(link_in(message).split("/")[2])
        assert link is not None and link.patient_id == patient.pk
    assert by_address["Family@Example.com"].subject == "Su enlace a sus recibos de Alma"  # the patient's language
    assert by_address["family@example.com"].subject == "Your link to your Alma receipts"


@pytest.mark.parametrize(
    "email",
    [
        "",
        "not an email",
        "a" * 300 + "@example.com",
        "x" * 100_000,
        "zoe@example.com\x00",
        "zo\x00e@example.com",
        "zoë@exämple.com",
        "<script>alert(1)</script>@example.com",
        "zoe@example.com, other@example.com",
        "zoe@example.com\r\nBcc: victim@example.com",
    ],
    ids=["empty", "words", "long", "huge", "nul-end", "nul-inside", "unicode", "markup", "two", "header-injection"],
)
def test_hostile_input_gets_a_clear_message_and_sends_nothing(
    email: str, django_capture_on_commit_callbacks: Any
) -> None:
    PatientFactory(email="zoe@example.com")
    response = ask(Client(), email, capture=django_capture_on_commit_callbacks)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Enter the email address on your Alma profile, like name@example.com." in html
    assert 'aria-invalid="true"' in html and "<script>" not in html and "\x00" not in html
    assert len(html) < 20_000  # a huge value is not echoed back
    assert ReceiptLinkRequest.objects.count() == 0 and mail.outbox == [] and PayLink.objects.count() == 0


def test_wrong_methods_and_wrong_shapes_change_nothing() -> None:
    PatientFactory(email="zoe@example.com")
    client = Client()
    for method in ("put", "delete", "patch"):
        response = getattr(client, method)(PAGE, data="email=zoe@example.com")
        assert response.status_code == 405 and "GET" in response["Allow"]
        assert "only takes the form" in response.content.decode()
    json_body = client.post(PAGE, data={"email": ["zoe@example.com"]}, content_type="application/json")
    assert json_body.status_code == 400
    repeated = client.post(
        PAGE, "email=nobody%40example.com&email=zoe%40example.com", "application/x-www-form-urlencoded"
    )
    assert repeated.status_code == 400 and "like name@example.com" in repeated.content.decode()
    assert ReceiptLinkRequest.objects.count() == 0 and mail.outbox == []


def test_the_form_needs_its_csrf_token() -> None:
    response = Client(enforce_csrf_checks=True).post(PAGE, {"email": "zoe@example.com"})
    assert response.status_code == 403 and ReceiptLinkRequest.objects.count() == 0


# --- Limits -----------------------------------------------------------------------------------------------------


def test_requests_are_limited_per_address_known_or_not(django_capture_on_commit_callbacks: Any) -> None:
    PatientFactory(email="zoe@example.com")
    for address in ("zoe@example.com", "nobody@example.com"):
        for n in range(receipts.RECEIPT_LINKS_PER_ADDRESS):
            ip = f"198.51.100.{n + 1}"  # a different network each time: only the address limit applies
            assert ask(Client(), address, ip, django_capture_on_commit_callbacks).status_code == 302
        limited = ask(Client(), address, "198.51.100.200", django_capture_on_commit_callbacks)
        assert limited.status_code == 429
        assert "Nothing more was sent" in limited.content.decode()
    assert len(mail.outbox) == receipts.RECEIPT_LINKS_PER_ADDRESS  # only the known address's, and no fourth
    # An hour later the address may ask again.
    ReceiptLinkRequest.objects.update(created_at=timezone.now() - timedelta(hours=1, minutes=1))
    assert ask(Client(), "zoe@example.com", "198.51.100.200").status_code == 302


def test_requests_are_limited_per_ip_and_per_ipv6_slash_64() -> None:
    for n in range(receipts.RECEIPT_LINKS_PER_NETWORK):
        assert ask(Client(), f"someone{n}@example.com", f"2001:db8:1:2::{n + 1:x}").status_code == 302
    assert ask(Client(), "another@example.com", "2001:db8:1:2:ffff::9").status_code == 429  # same /64
    assert ask(Client(), "another@example.com", "2001:db8:1:3::1").status_code == 302  # the next /64
    for n in range(receipts.RECEIPT_LINKS_PER_NETWORK - 1):
        assert ask(Client(), f"v4-{n}@example.com", "192.0.2.7").status_code == 302
    assert ask(Client(), "v4-last@example.com", "192.0.2.7").status_code == 302
    assert ask(Client(), "v4-over@example.com", "192.0.2.7").status_code == 429
    assert ReceiptLinkRequest.objects.count() == 2 * receipts.RECEIPT_LINKS_PER_NETWORK + 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_one_address_never_pass_the_limit(postgres: None) -> None:
    PatientFactory(email="zoe@example.com")
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def one(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(ask(Client(), "zoe@example.com", f"198.51.100.{n + 1}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [302] * receipts.RECEIPT_LINKS_PER_ADDRESS + [429] * (
        8 - receipts.RECEIPT_LINKS_PER_ADDRESS
    )
    assert ReceiptLinkRequest.objects.count() == receipts.RECEIPT_LINKS_PER_ADDRESS
    assert len(mail.outbox) == receipts.RECEIPT_LINKS_PER_ADDRESS


# --- Failures on the way ----------------------------------------------------------------------------------------


def test_redis_down_answers_the_same_and_the_sweep_sends_the_link_once(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    from alma_billing.core import queue
    from payments.tasks import receipts_link_task

    settings.ENQUEUE_RAISE_TASK_ERRORS = False
    patient = PatientFactory(email="zoe@example.com")
    eager = receipts_link_task.app.conf.task_always_eager
    receipts_link_task.app.conf.task_always_eager = False
    try:
        with mock.patch.object(receipts_link_task, "apply_async", side_effect=OperationalError("down")):
            response = ask(Client(), "zoe@example.com", capture=django_capture_on_commit_callbacks)
    finally:
        receipts_link_task.app.conf.task_always_eager = eager
        queue._broker_down_until = 0.0
    assert response.status_code == 302 and response["Location"] == "/pay/receipts/?sent=1"
    assert mail.outbox == [] and ReceiptLinkRequest.objects.get().processed_at is None

    later = timezone.now() + timedelta(minutes=15)
    assert receipts.receipts_link_requests_finish(cutoff=later) == 1
    assert receipts.receipts_link_requests_finish(cutoff=later) == 0  # once
    [message] = mail.outbox
    link = pay_link_find(link_in(message).split("/")[2])
    assert link is not None and link.patient_id == patient.pk


def test_the_payments_job_finishes_lost_receipts_link_requests(settings: Any) -> None:
    from payments.reconcile import payments_reconcile

    PatientFactory(email="zoe@example.com")
    ask(Client(), "zoe@example.com")  # its on_commit task is never run here: lost
    ReceiptLinkRequest.objects.update(created_at=timezone.now() - timedelta(hours=1))
    payments_reconcile()
    assert [m.to for m in mail.outbox] == [["zoe@example.com"]]


def test_an_address_changed_by_staff_before_the_email_goes_out_gets_nothing() -> None:
    patient = PatientFactory(email="zoe@example.com")
    ask(Client(), "zoe@example.com")  # queued, not yet sent
    Patient.objects.filter(pk=patient.pk).update(email="new-owner@example.com")
    request = ReceiptLinkRequest.objects.get()
    assert receipts.receipts_link_send(request_id=request.pk) == 0
    assert mail.outbox == [] and PayLink.objects.count() == 0


def test_the_database_failing_says_nothing_was_sent_not_a_500() -> None:
    from django.db import OperationalError as DbDown

    with mock.patch("payments.receipts.ReceiptLinkRequest.objects.create", side_effect=DbDown("gone")):
        response = ask(Client(), "zoe@example.com")
    assert response.status_code == 503 and "nothing was sent" in response.content.decode()


def test_the_address_is_never_stored_or_logged(caplog: Any, django_capture_on_commit_callbacks: Any) -> None:
    PatientFactory(email="zoe@example.com")
    with caplog.at_level("DEBUG"):
        ask(Client(), "zoe@example.com", capture=django_capture_on_commit_callbacks)
        ask(Client(), "stranger@example.com", capture=django_capture_on_commit_callbacks)
    stored = list(ReceiptLinkRequest.objects.values_list("address_digest", "patient_ids"))
    assert "zoe" not in repr(stored) and "stranger" not in repr(stored)
    assert "zoe@" not in caplog.text and "stranger@" not in caplog.text


# --- 3. Past receipts after verification ------------------------------------------------------------------------


def test_past_receipts_stay_listed_for_two_years_and_only_the_patients_own() -> None:
    patient = PatientFactory()
    recent, older, eighteen_months, almost_two_years = (
        paid(patient, cents, days_ago=days) for cents, days in ((1_000, 3), (2_000, 200), (3_000, 550), (4_000, 725))
    )
    too_old = paid(patient, 5_000, days_ago=740)
    theirs = paid(PatientFactory(phone="+16175550100"), 6_000)
    refunded_duplicate = paid(patient, 7_000, days_ago=5)
    PaymentAllocation.objects.filter(payment=refunded_duplicate).update(state=PaymentAllocation.State.SURPLUS)

    client = Client()
    verify(client, link_for(InvoiceFactory(session__patient=patient)))
    summary = client.get("/pay/invoices/").content.decode()
    listed = re.findall(r'href="/pay/payments/(\d+)/receipt.pdf"', summary)
    assert listed == [str(p.pk) for p in (recent, older, eighteen_months, almost_two_years)]  # newest first
    assert "$30.00" in summary and too_old.reference not in summary and theirs.reference not in summary
    assert client.get(f"/pay/payments/{eighteen_months.pk}/receipt.pdf").status_code == 200
    assert client.get(f"/pay/payments/{too_old.pk}/receipt.pdf").status_code == 200  # still downloadable

    before = (Payment.objects.get(pk=theirs.pk).receipt_emailed_at, PayLink.objects.count())
    for url in (f"/pay/payments/{theirs.pk}/receipt.pdf", f"/pay/payments/{theirs.pk}/"):
        response = client.get(url)
        assert response.status_code == 404 and theirs.reference not in response.content.decode()
    assert client.get("/pay/payments/99999999/receipt.pdf").status_code == 404
    assert (Payment.objects.get(pk=theirs.pk).receipt_emailed_at, PayLink.objects.count()) == before


def test_the_receipts_list_costs_one_query_whatever_its_length() -> None:
    patient = PatientFactory()
    for n in range(12):
        paid(patient, 1_000 + n, days_ago=n + 1)
    with CaptureQueriesContext(connection) as queries:
        listed = receipts.receipts_for(patient_id=patient.pk)
        _ = [(p.reference, p.paid_cents, p.succeeded_at, p.card_last4) for p in listed]
    assert len(listed) == 12 and len(queries) == 1


def test_receipts_need_verification() -> None:
    payment = paid(PatientFactory())
    response = Client().get(f"/pay/payments/{payment.pk}/receipt.pdf")
    assert response.status_code == 401 and not response.content.startswith(b"%PDF")


# --- 4. The PDF -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("Zoë", "Nguyễn"),
        ("Łukasz", "Wróblewski"),
        ("李", "小龍"),
        ("Ñandú", "Peña"),
        ("Δήμητρα", "Иванова"),
        ("김", "민준"),
        ("さくら", "髙橋"),
        ("王", "㐂"),  # CJK Extension A: only the Full cut of Droid Sans Fallback has it
    ],
)
def test_p8_the_pdf_prints_any_name_and_names_alma_as_payee(first: str, last: str) -> None:
    patient = PatientFactory(first_name=first, last_name=last)
    provider = ProviderFactory(display_name="Dr. Jörg Ærø 陈")
    payment = paid(patient, 12_345, session__provider=provider)
    text = pdf_text(receipts.receipt_pdf(payment))
    assert f"{first} {last}" in text
    assert "Dr. Jörg Ærø 陈" in text
    assert "Paid to Alma" in text and "$123.45" in text and "?" not in text


def test_p8_the_pdf_is_in_spanish_for_a_spanish_speaking_patient() -> None:
    patient = PatientFactory(first_name="Ñandú", last_name="Peña", preferred_language="es")
    text = pdf_text(receipts.receipt_pdf(paid(patient)))
    assert "Recibo de pago" in text and "Pagado a Alma" in text and "Ñandú Peña" in text
    assert "Payment receipt" not in text and "Paid to" not in text


def test_p8_a_character_no_font_has_still_makes_a_receipt_with_the_rest_of_the_name() -> None:
    patient = PatientFactory(first_name="Sarah", last_name="𠮷田")  # 𠮷: CJK Extension B, in neither font
    text = pdf_text(receipts.receipt_pdf(paid(patient)))
    assert "Sarah" in text and "田" in text and "Paid to Alma" in text


def test_p8_a_name_with_control_characters_still_makes_a_receipt() -> None:
    patient = PatientFactory(first_name="Zoe\x07\x1b", last_name="Lee\u200b")
    text = pdf_text(receipts.receipt_pdf(paid(patient)))
    assert "Zoe" in text and "Lee" in text


# --- 5. What every email may say --------------------------------------------------------------------------------

CLINICAL = (
    "therap",
    "session",
    "diagnos",
    "counsel",
    "psych",
    "mental",
    "behavioral",
    "clinical",
    "treatment",
    "specialt",
    "90837",
)


def _all_email_kinds(django_capture_on_commit_callbacks: Any) -> tuple[dict[str, mail.EmailMessage], Any]:
    """One of each email the app sends, through the code that sends it, for a provider whose name and practice
    would give away the kind of care."""
    from datetime import date

    from alma_billing.core.mail import build_patient_email
    from invoices.services import invoice_email_send
    from payments import autopay
    from payments.gateways.stripe import failure_message_for

    provider = ProviderFactory(display_name="Dr. Mara Quill, LCSW", practice__name="Harbor Psychiatry Group")
    patient = PatientFactory(email="zoe@example.com")
    invoice = InvoiceFactory(session__patient=patient, session__provider=provider, amount_cents=7_000)
    sent: dict[str, mail.EmailMessage] = {}

    def last(kind: str) -> None:
        sent[kind] = mail.outbox[-1]

    invoice_email_send(invoice_id=invoice.pk)
    last("invoice_issued")
    notice = "Autopay: an upcoming charge from Alma"
    autopay.autopay_email_send(invoice, "emails/autopay_notice", notice, card="Visa", when=timezone.now())
    last("autopay_notice")
    autopay.autopay_email_send(
        invoice,
        "emails/autopay_failed",
        "Autopay didn't go through for your Alma invoice",
        reason=failure_message_for("card_declined", ""),
        next_at=None,
        card="Visa",
    )
    last("autopay_failed")
    receipts.receipt_email_send(payment_id=paid(patient, 7_000, session__provider=provider).pk)
    last("payment_receipt")
    ask(Client(), "zoe@example.com", capture=django_capture_on_commit_callbacks)
    last("receipts_link")
    # The reminder and the claim refund notice, with the context their senders build.
    build_patient_email(
        to=patient.email,
        subject="Reminder: you have an open invoice from Alma",
        template="emails/reminder",
        context={
            "first_name": patient.first_name,
            "url": "http://127.0.0.1:8000/pay/x/",
            "expires_at": timezone.now(),
            "invoices": [{"number": invoice.number, "issued_on": date.today(), "amount": "$70.00"}],
            "total": "$70.00",
        },
    ).send()
    last("reminder")
    build_patient_email(
        to=patient.email,
        subject="A refund from Alma",
        template="emails/claim_refund",
        context={"first_name": patient.first_name, "amount": "$10.00"},
    ).send()
    last("claim_refund")
    return sent, provider


def test_no_email_names_the_provider_their_specialty_or_anything_clinical_and_each_has_a_title(
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent, provider = _all_email_kinds(django_capture_on_commit_callbacks)
    templates = {p.stem for p in (Path(settings.BASE_DIR) / "templates" / "emails").glob("*.html")}
    assert set(sent) == templates, "a new kind of email: add it here"
    for kind, message in sent.items():
        html = message.alternatives[0][0]  # type: ignore[index]
        for part in (message.subject, message.body, html):
            words = str(part).lower()
            for private in (provider.display_name, "Quill", "LCSW", provider.practice.name, provider.npi, *CLINICAL):
                assert private.lower() not in words, (kind, private)
        title = re.search(r"<title>(.*?)</title>", html)
        assert title and html_unescape(title.group(1)) == message.subject, kind
        assert "<head>" in html and '<meta charset="utf-8">' in html, kind
    # Amounts may appear in emails (docs/security.md "Privacy of emails and SMS"): the receipt says what was paid.
    assert "$70.00" in sent["payment_receipt"].body


def test_every_email_template_is_free_of_clinical_words_and_provider_fields() -> None:
    for path in (Path(settings.BASE_DIR) / "templates" / "emails").iterdir():
        source = path.read_text().lower()
        for word in CLINICAL:
            assert word not in source, (path.name, word)
        # No template prints anything of the provider or the care ("contact your provider" is fine).
        assert not re.search(r"\{\{[^}]*(provider|practice|npi|cpt|special|diagnos)", source), path.name


def test_a_body_over_the_upload_limit_gets_the_patient_error_page_and_sends_nothing() -> None:
    body = "email=" + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    response = Client().post(PAGE, body, "application/x-www-form-urlencoded")
    assert response.status_code == 400 and b"Traceback" not in response.content
    assert ReceiptLinkRequest.objects.count() == 0 and mail.outbox == []


def test_an_international_domain_is_accepted_and_answered_like_any_other() -> None:
    response = ask(Client(), "zoe@exämple.com")
    assert response.status_code == 302 and response["Location"] == "/pay/receipts/?sent=1"
    assert ReceiptLinkRequest.objects.get().patient_ids == []
