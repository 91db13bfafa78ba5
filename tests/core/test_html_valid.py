"""Issue 11: the W3C Nu HTML checker (vnu.jar from the npm package vnu-jar, run on the machine's Java) finds no error
in any patient page or state, in English and Spanish, nor in the HTML part of any email kind.

Pages are fetched the way a patient reaches them (Django's test client, localstripe for the card pages); emails are
rendered from their templates. Everything is saved into one folder and checked in ONE JVM run (a few seconds). A
known-bad control file goes in the same run, so a checker that silently checks nothing cannot pass.
"""

import datetime
import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import resolve
from django.utils import timezone, translation

from alma_billing.core import error_pages
from alma_billing.core.mail import build_patient_email
from invoices.models import Invoice, Practice
from tests.factories import InvoiceFactory, PatientFactory, ProviderFactory
from tests.needs import need
from tests.payments import stripe_fake
from tests.payments.flows import card_page, checkout, confirm, open_invoices
from tests.verification.helpers import link_for, texted_codes
from verification.models import PayLink

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse  # what the test Client answers

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]
VNU_JAR = REPO_ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
PROFILE_PHONE = "+12025550143"
TYPED_PHONE = "(202) 555-0143"
WRONG_PHONE = "(202) 555-0199"
CONTROL = "control-known-invalid.html"
CONTROL_HTML = '<!doctype html><html lang="en"><head><title>x</title></head><body><p><div></p></body></html>'
EMAIL_TEMPLATES = sorted((REPO_ROOT / "templates" / "emails").glob("*.html"))
EMAIL_KINDS = [path.stem for path in EMAIL_TEMPLATES]  # every kind, including ones added later
# The emails' HTML gets its <head><title> on branch wip-b (issue 11): until that is merged the check is known to fail.
EMAILS_HAVE_TITLES = all("<title>" in path.read_text() for path in EMAIL_TEMPLATES)


@pytest.fixture
def vnu() -> list[str]:
    java = shutil.which("java")
    need("Java", java is not None, "no `java` on PATH (apt-get install default-jre-headless)")
    need("vnu-jar", VNU_JAR.exists(), f"{VNU_JAR.relative_to(REPO_ROOT)} is missing (run `npm ci`; make install does)")
    return [str(java), "-Xss8m", "-jar", str(VNU_JAR)]


def vnu_errors(vnu: list[str], folder: Path) -> dict[str, list[str]]:
    """file name -> the checker's errors (with line and extract), for every .html file in `folder`."""
    run = subprocess.run(
        [*vnu, "--format", "json", "--exit-zero-always", "--skip-non-html", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(run.stderr or run.stdout)  # vnu writes its report to stderr
    errors: dict[str, list[str]] = {}
    for message in report["messages"]:
        if message["type"] in ("error", "non-document-error") or message.get("subType") == "fatal":
            name = Path(message.get("url", "?").removeprefix("file:")).name
            errors.setdefault(name, []).append(
                f"line {message.get('lastLine', '?')}: {message['message']} [{message.get('extract', '').strip()}]"
            )
    return errors


def _html(response: "HttpResponse | TestResponse") -> str:
    assert response["Content-Type"].startswith("text/html"), (response.status_code, response["Content-Type"])
    return response.content.decode()


def _client(language: str, ip: str, **kwargs: Any) -> Client:
    client = Client(REMOTE_ADDR=ip, **kwargs)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def _verify(client: Client, invoice: Invoice) -> None:
    link = link_for(invoice)
    client.get(link)
    assert client.post(link, {"phone": TYPED_PHONE}).status_code == 302
    response = client.post("/pay/code/", {"code": texted_codes()[-1]})
    assert response.status_code == 302 and response["Location"] == "/pay/invoices/"


def _handler(language: str, handler: Any) -> str:
    request = RequestFactory().get("/pay/something/")
    with translation.override(language):
        response = handler(request) if handler is error_pages.server_error else handler(request, Exception())
    return _html(response)


def patient_pages(language: str, ip: str) -> dict[str, str]:
    """Every patient page and state, as the server sends it, in `language`."""
    pages: dict[str, str] = {}

    # The link, the phone check, the code, one invoice, and paying it: declined, confirming, received.
    [invoice] = open_invoices(PatientFactory(phone=PROFILE_PHONE), 7_000)
    client = _client(language, ip)
    link = link_for(invoice)
    pages["landing"] = _html(client.get(link))
    pages["phone-wrong"] = _html(client.post(link, {"phone": WRONG_PHONE}))
    assert client.post(link, {"phone": TYPED_PHONE}).status_code == 302
    pages["code"] = _html(client.get("/pay/code/"))
    code = texted_codes()[-1]
    pages["code-wrong"] = _html(client.post("/pay/code/", {"code": "000000" if code != "000000" else "111111"}))
    assert client.post("/pay/code/", {"code": code}).status_code == 302
    pages["summary-one-invoice"] = _html(client.get("/pay/invoices/"))
    pages["invoice-detail"] = _html(client.get(f"/pay/invoices/{invoice.number}/"))
    other = InvoiceFactory(amount_cents=3_000)  # another patient's invoice: the same answer as one that does not exist
    pages["invoice-not-found"] = _html(client.get(f"/pay/invoices/{other.number}/"))
    fields = card_page(client, checkout(client, "all"))
    pages["card"] = fields["page"]
    pages["confirming"] = _html(client.get(fields["attempt-url"]))
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.DECLINED_AT_CHARGE)
    declined = confirm(client, fields)
    assert declined["status"] == "failed", declined
    pages["result-declined"] = _html(client.get(declined["redirect"]))
    retry = client.get(declined["redirect"].rstrip("/") + "/retry/")
    assert retry.status_code == 302, retry
    pages["card-after-decline"] = _html(client.get(retry["Location"]))
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    paid = confirm(client, fields)
    assert paid["status"] == "succeeded", paid
    pages["result-received"] = _html(client.get(paid["redirect"]))
    pages["summary-all-paid"] = _html(client.get("/pay/invoices/"))
    pages["signed-out"] = _html(client.post("/pay/sign-out/"))

    # Several invoices: the summary and Details.
    invoices = open_invoices(PatientFactory(phone=PROFILE_PHONE), 4_000, 5_500, 7_000)
    client = _client(language, ip)
    _verify(client, invoices[-1])
    pages["summary-several-invoices"] = _html(client.get("/pay/invoices/"))
    pages["details"] = _html(client.get("/pay/invoices/details/"))

    # Autopay.
    provider = ProviderFactory(practice__autopay_policy=Practice.AutopayPolicy.OPTIONAL)
    client = _client(language, ip)
    _verify(client, InvoiceFactory(session__patient=PatientFactory(phone=PROFILE_PHONE), session__provider=provider))
    pages["summary-autopay-offered"] = _html(client.get("/pay/invoices/"))
    pages["autopay"] = _html(client.get("/pay/autopay/"))

    # Locked after too many wrong numbers: the attempt that locks, then the page opened again.
    [invoice] = open_invoices(PatientFactory(phone=PROFILE_PHONE), 7_000)
    client = _client(language, ip)
    link = link_for(invoice)
    for _ in range(settings.VERIFY_MAX_PHONE_TRIES):
        response = client.post(link, {"phone": WRONG_PHONE})
    pages["locked"] = _html(response)
    pages["locked-opened-again"] = _html(client.get(link))

    # Links that do not work, and the error pages.
    client = _client(language, ip)
    pages["link-not-recognized"] = _html(client.get("/pay/" + "A" * 43 + "/"))
    [invoice] = open_invoices(PatientFactory(phone=PROFILE_PHONE), 7_000)
    expired = link_for(invoice)
    PayLink.objects.filter(invoice=invoice).update(expires_at=timezone.now() - datetime.timedelta(days=1))
    pages["link-expired"] = _html(client.get(expired))
    if resolve("/pay/receipts/").url_name != "pay-link":  # the public "receipts later" page, where it exists
        pages["receipts-request"] = _html(client.get("/pay/receipts/"))
        pages["receipts-requested"] = _html(client.post("/pay/receipts/", {"email": "nobody@example.com"}, follow=True))
    pages["not-verified"] = _html(client.get("/pay/invoices/", follow=True))
    pages["404"] = _html(client.get("/no/such/page/"))
    csrf_client = _client(language, ip, enforce_csrf_checks=True)
    pages["403-csrf"] = _html(csrf_client.post("/pay/language/", {"language": "en"}))
    pages["400"] = _handler(language, error_pages.bad_request)
    pages["403"] = _handler(language, error_pages.permission_denied)
    pages["500"] = _handler(language, error_pages.server_error)
    return pages


def test_issue11_every_patient_page_is_valid_html(stripe_api: str, vnu: list[str], tmp_path: Path) -> None:
    for language, ip in (("en", "198.51.100.21"), ("es", "198.51.100.22")):
        for name, html in patient_pages(language, ip).items():
            assert f'<html lang="{language}"' in html, f"{name} ({language}) is not in {language}"
            (tmp_path / f"{name}-{language}.html").write_text(html)
    (tmp_path / CONTROL).write_text(CONTROL_HTML)

    errors = vnu_errors(vnu, tmp_path)

    assert errors.pop(CONTROL, None), "the checker found nothing in a known-invalid file: is it checking at all?"
    assert len(list(tmp_path.glob("*.html"))) >= 2 * 28 + 1
    assert errors == {}, "\n".join(f"{name}:\n  " + "\n  ".join(lines) for name, lines in sorted(errors.items()))


def email_context() -> dict[str, Any]:
    """Every variable any email template uses (templates/emails/*.html), with realistic values."""
    when = timezone.now() + datetime.timedelta(days=30)
    invoices = InvoiceFactory.build_batch(2)
    for n, invoice in enumerate(invoices):
        invoice.number = f"INV-00012{n}"
    return {
        "subject": "Your Alma <billing> & receipt",  # build_patient_email sets it where the emails use it as <title>
        "first_name": "José Ñúñez <O'Brien>",  # unicode and characters HTML must escape
        "url": "https://billing.example.com/pay/AbC-123_xyz/?a=1&b=2",
        "receipts_url": "https://billing.example.com/pay/receipts/",
        "receipt_url": "https://billing.example.com/pay/receipts/AbC-123_xyz/",
        "expires_at": when,
        "when": when,
        "next_at": when,
        "paid_on": timezone.now(),
        "amount": "$70.00",
        "total": "$125.00",
        "refunded": "$10.00",
        "count": 2,
        "card": "Visa ending in 4242",
        "number": "INV-000123",
        "reference": "PAY-000045",
        "reason": "The card was declined.",
        "invoices": [{"number": i.number, "amount": "$62.50", "invoice": i} for i in invoices],
        "invoice": invoices[0],
    }


@pytest.mark.xfail(not EMAILS_HAVE_TITLES, reason="emails without <title> until wip-b is merged", strict=True)
def test_issue11_every_email_kind_is_valid_html(vnu: list[str], tmp_path: Path, settings: Any) -> None:
    settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE = "billing-help@example.com", "(800) 555-0100"
    several = email_context()
    one = {**several, "invoices": several["invoices"][:1], "count": 1}
    for kind in EMAIL_KINDS:
        for language in ("en", "es"):
            for variant, context in (("several", several), ("one", one)):
                message = build_patient_email(
                    to="patient@example.com",
                    subject="Alma <billing> & co",
                    template=f"emails/{kind}",
                    context=context,
                    language=language,
                )
                [(html, mimetype)] = message.alternatives
                assert mimetype == "text/html", (kind, language)
                (tmp_path / f"{kind}-{language}-{variant}.html").write_text(str(html))
    (tmp_path / CONTROL).write_text(CONTROL_HTML)

    errors = vnu_errors(vnu, tmp_path)

    assert errors.pop(CONTROL, None), "the checker found nothing in a known-invalid file: is it checking at all?"
    assert errors == {}, "\n".join(f"{name}:\n  " + "\n  ".join(lines) for name, lines in sorted(errors.items()))
