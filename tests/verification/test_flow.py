"""P4: the emailed link opens a patient's invoices only after their phone number and an SMS code."""

import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from alma_billing.core.audit import SYSTEM
from alma_billing.core.models import AuditEvent
from invoices.models import Invoice
from tests.factories import InvoiceFactory, PatientFactory, insured_session
from tests.verification.helpers import link_for, texted_codes, verify
from verification.services import pay_links_revoke

pytestmark = pytest.mark.django_db

MISMATCH = "doesn&#x27;t match the phone number on your profile"
IP = "198.51.100.7"


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(amount_cents=12_345, session__patient__phone="+12025550143")


@pytest.mark.parametrize("typed", ["(202) 555-0143", "202.555.0143", "+1 202 555 0143", "2025550143", "1-202-555-0143"])
def test_p4_right_phone_in_any_common_format_texts_a_code_and_opens_the_summary(typed: str, invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)

    response = client.post(url, {"phone": typed}, REMOTE_ADDR=IP)
    assert response.status_code == 302 and response["Location"] == "/pay/code/"
    assert len(texted_codes()) == 1
    code_page = client.get("/pay/code/").content.decode()
    assert "Verification code" in code_page and ">Verify</button>" in code_page

    response = client.post("/pay/code/", {"code": texted_codes()[0]}, REMOTE_ADDR=IP)
    assert response["Location"] == "/pay/invoices/"
    summary = client.get("/pay/invoices/").content.decode()
    assert "$123.45" in summary and invoice.number in summary


def test_p4_wrong_phone_says_to_contact_the_provider_and_reveals_nothing(invoice: Invoice) -> None:
    client = Client()
    response = client.post(link_for(invoice), {"phone": "(617) 555-0100"}, REMOTE_ADDR=IP)

    page = response.content.decode()
    assert response.status_code == 400
    assert MISMATCH in page and "contact your provider to update the phone number" in page
    assert 'aria-describedby="phone-error"' in page and 'id="phone-error"' in page
    for secret in (
        "0143",
        invoice.patient.first_name,
        invoice.patient.last_name,
        "123.45",
        invoice.provider.display_name,
    ):
        assert secret not in page
    assert texted_codes() == []
    assert client.get("/pay/invoices/").status_code == 401


def test_p4_text_that_is_not_a_phone_number_is_explained_and_not_counted(invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)
    for _ in range(8):
        response = client.post(url, {"phone": "call me"}, REMOTE_ADDR=IP)
        assert "Enter a US phone number with area code" in response.content.decode()
    verify(client, url)  # still not locked


def test_p4_five_wrong_phones_lock_the_patient_across_links_and_ips(invoice: Invoice) -> None:
    first_link, second_link = link_for(invoice), link_for(invoice)
    for attempt in range(5):
        link = first_link if attempt % 2 else second_link
        Client().post(link, {"phone": "(617) 555-0100"}, REMOTE_ADDR=f"198.51.100.{attempt + 10}")

    response = Client().post(link_for(invoice), {"phone": "(202) 555-0143"}, REMOTE_ADDR="203.0.113.99")

    assert response.status_code == 429
    assert "account is locked" in response.content.decode() and "try again in 30 minutes" in response.content.decode()
    assert texted_codes() == []
    assert AuditEvent.objects.filter(action="verification.locked", object_id=str(invoice.patient_id)).count() == 1
    # The lock lifts by itself after the lockout window.
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        verify(Client(), first_link)


def test_p4_one_ip_guessing_across_many_patients_is_blocked(settings) -> None:
    settings.VERIFY_MAX_FAILURES_PER_IP = 6
    victims = [InvoiceFactory(session__patient=PatientFactory(phone=f"+1202555{i:04d}")) for i in range(150, 156)]
    for victim in victims:  # one wrong guess per patient: no patient reaches their own limit
        Client().post(link_for(victim), {"phone": "(617) 555-0100"}, REMOTE_ADDR=IP)

    target = InvoiceFactory(session__patient=PatientFactory(phone="+12025550199"))
    response = Client().post(link_for(target), {"phone": "(202) 555-0199"}, REMOTE_ADDR=IP)

    assert response.status_code == 429 and "Too many attempts from your network" in response.content.decode()
    verify(Client(), link_for(target), phone="(202) 555-0199", ip="203.0.113.5")  # other networks are fine


def test_p4_an_ipv6_client_rotating_through_its_own_64_is_still_one_network(settings) -> None:
    settings.VERIFY_MAX_FAILURES_PER_IP = 6
    victims = [InvoiceFactory(session__patient=PatientFactory(phone=f"+1202555{i:04d}")) for i in range(160, 166)]
    for n, victim in enumerate(victims, start=1):  # a new address for every guess, all in 2001:db8:aa:bb::/64
        Client().post(link_for(victim), {"phone": "(617) 555-0100"}, REMOTE_ADDR=f"2001:db8:aa:bb::{n:x}")

    target = InvoiceFactory(session__patient=PatientFactory(phone="+12025550198"))
    response = Client().post(link_for(target), {"phone": "(202) 555-0198"}, REMOTE_ADDR="2001:db8:aa:bb:ffff::1")

    assert response.status_code == 429 and "Too many attempts from your network" in response.content.decode()
    verify(Client(), link_for(target), phone="(202) 555-0198", ip="2001:db8:aa:cc::1")  # the next /64 is fine


def test_p4_wrong_code_then_lockout_after_five_checks(invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)
    client.post(url, {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    right = texted_codes()[-1]
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    for _ in range(4):
        response = client.post("/pay/code/", {"code": wrong}, REMOTE_ADDR=IP)
        assert response.status_code == 400 and "That code isn&#x27;t right" in response.content.decode()
    response = client.post("/pay/code/", {"code": wrong}, REMOTE_ADDR=IP)
    assert response.status_code == 429

    response = client.post("/pay/code/", {"code": right}, REMOTE_ADDR="203.0.113.50")
    assert response.status_code == 429 and "locked" in response.content.decode()
    assert client.get("/pay/invoices/").status_code == 401
    assert AuditEvent.objects.filter(action="verification.locked", data__kind="code").count() == 1


def test_p4_a_code_works_once(invoice: Invoice) -> None:
    url = link_for(invoice)
    verify(Client(), url)
    used = texted_codes()[-1]

    other = Client()
    other.post(url, {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)  # a new code is texted...
    response = other.post("/pay/code/", {"code": used}, REMOTE_ADDR=IP)  # ...the old one no longer works
    assert response.status_code == 400
    assert other.get("/pay/invoices/").status_code == 401


def test_p4_a_code_expires_after_ten_minutes(invoice: Invoice) -> None:
    client = Client()
    client.post(link_for(invoice), {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    with time_machine.travel(timezone.now() + timedelta(minutes=10, seconds=5)):
        response = client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR=IP)
    assert response.status_code == 400 and "expired" in response.content.decode()
    # Asking for a new code works.
    client.post("/pay/code/resend/", REMOTE_ADDR=IP)
    assert client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR=IP).status_code == 302


def test_p4_at_most_five_codes_are_sent_per_ten_minutes(invoice: Invoice) -> None:
    client = Client()
    client.post(link_for(invoice), {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    for _ in range(4):
        assert client.post("/pay/code/resend/", REMOTE_ADDR=IP).status_code == 302
    response = client.post("/pay/code/resend/", REMOTE_ADDR=IP)
    assert response.status_code == 429 and "wait 10 minutes" in response.content.decode()
    assert len(texted_codes()) == 5
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert client.post("/pay/code/resend/", REMOTE_ADDR=IP).status_code == 302
    assert len(texted_codes()) == 6


def test_p4_session_key_rotates_on_success(invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)
    client.post(url, {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    before = client.session.session_key
    assert before is not None
    client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR=IP)
    assert client.session.session_key != before
    stolen = Client()
    stolen.cookies["sessionid"] = before  # a key seen before verification opens nothing
    assert stolen.get("/pay/invoices/").status_code == 401


def test_p4_verified_access_ends_after_15_idle_minutes(invoice: Invoice) -> None:
    client = Client()
    verify(client, link_for(invoice))
    start = timezone.now()
    with time_machine.travel(start + timedelta(minutes=14)):
        assert client.get("/pay/invoices/").status_code == 200  # activity keeps it alive
    with time_machine.travel(start + timedelta(minutes=14 + 16)):
        response = client.get("/pay/invoices/")
    assert response.status_code == 401 and "secure session has ended" in response.content.decode()


def test_p4_verified_access_ends_after_two_hours_even_when_active(invoice: Invoice) -> None:
    client = Client()
    verify(client, link_for(invoice))
    start = timezone.now()
    for minutes in range(10, 120, 10):
        with time_machine.travel(start + timedelta(minutes=minutes)):
            assert client.get("/pay/invoices/").status_code == 200
    with time_machine.travel(start + timedelta(minutes=121)):
        assert client.get("/pay/invoices/").status_code == 401


def test_p4_a_patient_cannot_open_another_patients_invoice_by_changing_the_url(invoice: Invoice) -> None:
    other = InvoiceFactory(amount_cents=99_999, session__patient__phone="+16175550100")
    client = Client()
    verify(client, link_for(invoice))

    assert client.get(f"/pay/invoices/{invoice.number}/").status_code == 200
    response = client.get(f"/pay/invoices/{other.number}/")
    assert response.status_code == 404
    assert "999.99" not in response.content.decode()
    assert "999.99" not in client.get("/pay/invoices/").content.decode()


def test_p4_opening_another_patients_link_does_not_carry_over_access(invoice: Invoice) -> None:
    other = InvoiceFactory(amount_cents=99_999, session__patient__phone="+16175550100")
    client = Client()
    verify(client, link_for(invoice))
    # The other patient's link, opened in the same browser, asks for that patient's phone before anything else.
    response = client.post(link_for(other), {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    assert response.status_code == 400 and MISMATCH in response.content.decode()
    assert "999.99" not in client.get("/pay/invoices/").content.decode()


def test_p4_summary_explains_each_amount(django_capture_on_commit_callbacks) -> None:
    from invoices import services

    session = insured_session(
        allowed_amount_cents=15_000,
        plan_coinsurance_bp=2000,
        plan_deductible_remaining_cents=5_000,
        patient__phone="+12025550143",
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
    invoice = Invoice.objects.get(session=session)
    client = Client()
    verify(client, link_for(invoice))

    page = client.get("/pay/invoices/").content.decode()
    assert "$70.00" in page
    assert session.date_of_service.strftime("%b %-d, %Y") in page
    assert "Toward your deductible: $50.00" in page
    assert "Your coinsurance: 20% of $100.00 = $20.00" in page


def test_p4_revoked_and_expired_links_say_what_to_do(invoice: Invoice) -> None:
    url = link_for(invoice)
    pay_links_revoke(patient=invoice.patient, reason="phone number changed", actor=SYSTEM)
    response = Client().get(url)
    assert response.status_code == 410 and "replaced" in response.content.decode()
    # A pending code request on a link revoked mid-way cannot be completed either.
    url = link_for(invoice)
    client = Client()
    client.post(url, {"phone": "(202) 555-0143"}, REMOTE_ADDR=IP)
    pay_links_revoke(patient=invoice.patient, reason="phone number changed", actor=SYSTEM)
    assert client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR=IP).status_code == 400


def test_p4_code_page_without_a_phone_step_asks_to_start_again() -> None:
    response = Client().get("/pay/code/")
    assert response.status_code == 400 and "open the link in your invoice email again" in response.content.decode()


def test_p4_forms_need_csrf(invoice: Invoice) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post(link_for(invoice), {"phone": "(202) 555-0143"}).status_code == 403
    assert texted_codes() == []


def test_p4_patient_pages_send_security_headers(invoice: Invoice, settings) -> None:
    settings.SECURE_HSTS_SECONDS = 31_536_000
    response = Client().get(link_for(invoice), secure=True)
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "same-origin"  # never sent to another site
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "<script" not in response.content.decode()  # no third-party (or any) scripts before verification


def test_p4_production_refuses_the_local_sms_backend() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "EMAIL_URL": "smtp://localhost:25",
        "VERIFY_BACKEND": "local",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import alma_billing.settings"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "cannot run with DEBUG off" in result.stderr
    env["VERIFY_BACKEND"] = "twilio"
    result = subprocess.run(
        [sys.executable, "-c", "import alma_billing.settings"], env=env, capture_output=True, text=True, check=False
    )
    assert "TWILIO_ACCOUNT_SID" in result.stderr


def test_p4_reopening_the_link_after_verifying_goes_straight_to_the_summary(invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)
    verify(client, url)
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == "/pay/invoices/"
    assert len(texted_codes()) == 1
