"""Every patient page, message, email, SMS and the receipt in Spanish: Spanish words appear, English ones do not."""

import json
import re
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client, override_settings
from django.utils import timezone, translation

from alma_billing.core.mail import send_patient_email
from invoices.models import Invoice, Patient
from invoices.services import _email_link
from payments.gateways.stripe import failure_message_for
from payments.models import Payment
from tests.factories import InvoiceFactory, PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import card_page, open_invoices, pay, pdf_text
from tests.verification.helpers import link_for, texted_codes, verify

pytestmark = pytest.mark.django_db

ENGLISH = [
    "Confirm it's you",
    "Phone number",
    "Verification code",
    "Your invoices",
    "Pay most recent invoice",
    "Pay all outstanding",
    "Back to your invoices",
    "Payment received",
    "Download receipt",
    "Nothing was charged",
    "Questions about a bill?",
    "Secure billing",
    "Why this amount?",
    "Hello ",
]


def spanish_client() -> Client:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    return client


def assert_spanish(page: str, *spanish: str) -> None:
    assert '<html lang="es">' in page or "<html" not in page
    for words in spanish:
        assert words in page, words
    for words in ENGLISH:
        assert words not in page, words


def text(html: str) -> str:
    return re.sub(r"\s+", " ", html)


def test_verification_pages_and_their_messages_are_in_spanish() -> None:
    invoice = InvoiceFactory(amount_cents=7_000, session__patient__phone="+12025550143")
    client = spanish_client()
    url = link_for(invoice)
    assert_spanish(client.get(url).content.decode(), "Confirme que es usted", "Número de teléfono", "Continuar")

    wrong = client.post(url, {"phone": "(202) 555-0100"}).content.decode()
    assert_spanish(text(wrong), "Ese número no coincide con el número de teléfono de su perfil")
    not_a_phone = client.post(url, {"phone": "12"}).content.decode()
    assert_spanish(text(not_a_phone), "Ingrese un número de teléfono de EE. UU.")

    client.post(url, {"phone": "(202) 555-0143"})
    sms = json.loads(sorted(settings.OUTBOX_DIR.glob("*.sms.json"))[-1].read_text())["body"]
    assert sms.startswith("Su código de facturación de Alma es ") and "Vence en 10 minutos" in sms
    code_page = client.get("/pay/code/").content.decode()
    assert_spanish(code_page, "Ingrese su código", "Código de verificación", ">Verificar</button>")
    wrong_code = client.post("/pay/code/", {"code": "000000"}).content.decode()
    assert_spanish(text(wrong_code), "Ese código no es correcto")


def test_the_lockout_message_is_in_spanish() -> None:
    invoice = InvoiceFactory(amount_cents=7_000, session__patient__phone="+12025550143")
    client = spanish_client()
    url = link_for(invoice)
    for _ in range(settings.VERIFY_MAX_PHONE_TRIES):
        client.post(url, {"phone": "(202) 555-0100"})
    locked = client.post(url, {"phone": "(202) 555-0143"})
    assert locked.status_code == 429
    assert_spanish(
        text(locked.content.decode()),
        "Por su seguridad, su cuenta de facturación de Alma está bloqueada",
        "no solo este",
    )


def test_link_problems_and_ended_sessions_are_in_spanish() -> None:
    client = spanish_client()
    unknown = client.get("/pay/" + "x" * 43 + "/").content.decode()
    assert_spanish(text(unknown), "No reconocemos el enlace", "Este enlace no es válido")
    ended = client.get("/pay/invoices/").content.decode()
    assert_spanish(text(ended), "La sesión terminó", "su sesión segura terminó")


def test_summary_details_card_and_result_pages_are_in_spanish(stripe_api: str, patient: Patient) -> None:
    Patient.objects.filter(pk=patient.pk).update(preferred_language="es")
    older, newer = open_invoices(patient, 5_000, 7_000)
    client = spanish_client()
    verify(client, link_for(newer))

    summary = text(client.get("/pay/invoices/").content.decode())
    assert_spanish(
        summary,
        "Sus facturas",
        "Tiene 2 facturas sin pagar por un total de <strong>$120.00</strong>.",
        "Pagar la factura más reciente",
        "Pagar todo lo pendiente",
        ">Detalles</button>",
        "¿Por qué este monto?",
        "Cerrar sesión",
    )
    details = text(client.get("/pay/invoices/details/").content.decode())
    assert_spanish(details, "Elija una factura para pagar", "Pagar esta factura ($50.00)")

    response = client.post("/pay/checkout/", {"choice": "recent"})
    fields = card_page(client, response["Location"])
    assert_spanish(text(fields["page"]), "Pagar $70.00", "Tarjeta de crédito o débito", "Por su consulta del")
    assert fields["locale"] == "es-419"
    assert fields["msg-processing"] == "Procesando…" and fields["msg-paying"] == "Pagando…"

    stripe_fake.save_card(fields["setup-id"], stripe_fake.DECLINED_AT_CHARGE)
    declined = client.post(
        "/pay/card/confirm/",
        {"setup_intent": fields["setup-id"], "attempt_key": fields["attempt-key"]},
        content_type="application/json",
    ).json()
    assert declined["status"] == "failed" and "Pruebe con otra tarjeta" in declined["message"]
    failed = Payment.objects.get()
    assert "Try another card" in failed.failure_message  # the history column keeps English; the page translates
    result = text(client.get(declined["redirect"]).content.decode())
    assert_spanish(result, "Su pago no se realizó", "No se cobró nada.", "Probar con otra tarjeta")

    mail.outbox.clear()
    paid = pay(client, "recent")
    assert paid["status"] == "succeeded"
    result = text(client.get(paid["redirect"]).content.decode())
    assert_spanish(
        result, "Pago recibido", "Descargar recibo", "Gracias. Recibimos $70.00 de su Visa que termina en 4242."
    )


def test_the_receipt_email_and_pdf_follow_the_patients_language(
    stripe_api: str, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    Patient.objects.filter(pk=patient.pk).update(preferred_language="es")
    (invoice,) = open_invoices(patient, 7_000)
    client = Client()  # an English browser: the profile's language still applies once verified
    verify(client, link_for(invoice))
    assert '<html lang="es">' in client.get("/pay/invoices/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        result = pay(client, "all")
    assert result["status"] == "succeeded"
    [receipt] = [m for m in mail.outbox if "Recibimos su pago" in m.subject]
    assert_spanish(str(receipt.body), "Hola, Jordan:", "Recibimos su pago de $70.00", "Visa que termina en 4242")
    assert receipt.extra_headers["Content-Language"] == "es"
    payment = Payment.objects.get()
    pdf = pdf_text(client.get(f"/pay/payments/{payment.pk}/receipt.pdf").content)
    assert "Recibo de pago" in pdf and "Total pagado" in pdf and "Payment receipt" not in pdf


EMAILS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "emails/invoice_issued": ({}, ["Tiene una nueva factura de Alma.", "Ver y pagar su factura"]),
    "emails/reminder": (
        {"invoices": [{"number": "A-1", "issued_on": timezone.now(), "amount": "$70.00"}] * 2, "total": "$140.00"},
        ["Le recordamos que tiene 2 facturas pendientes de Alma:", "Total: <strong>$140.00</strong>"],
    ),
    "emails/payment_receipt": (
        {"amount": "$70.00", "reference": "R-1", "card": "Visa", "paid_on": timezone.now()},
        ["Recibimos su pago de <strong>$70.00</strong>", "Referencia: R-1"],
    ),
    "emails/autopay_notice": (
        {"amount": "$70.00", "number": "A-1", "card": "Visa", "when": timezone.now()},
        ["Usted está inscrito en el pago automático."],
    ),
    "emails/autopay_failed": (
        {"amount": "$70.00", "number": "A-1", "card": "Visa", "reason": failure_message_for("expired_card")},
        ["El pago automático de la factura A-1", "Dejamos de intentar el pago automático"],
    ),
}


@pytest.mark.parametrize("template", sorted(EMAILS))
def test_every_email_is_in_the_patients_language(template: str) -> None:
    extra, spanish = EMAILS[template]
    context = {"first_name": "Jordan", "url": "https://pay.example/x/", "expires_at": timezone.now(), **extra}
    send_patient_email(to="p@example.com", subject="s", template=template, context=context, language="es")
    [message] = mail.outbox
    html = text(str(message.alternatives[0][0]))  # type: ignore[union-attr]
    assert '<html lang="es">' in html
    assert_spanish(html, "Hola, Jordan:", *spanish)
    assert_spanish(str(message.body), "Hola, Jordan:")


def test_the_invoice_email_uses_the_preferred_language() -> None:
    patient = PatientFactory(preferred_language="es")
    invoice: Invoice = InvoiceFactory(session__patient=patient)
    _email_link(invoice)
    [message] = mail.outbox
    assert message.subject == "Tiene una nueva factura de Alma"
    assert "Hola, Jordan:" in message.body


@override_settings(DEBUG=False, SUPPORT_EMAIL="help@alma.example", SUPPORT_PHONE="(800) 555-0199")
def test_error_pages_are_in_spanish() -> None:
    client = spanish_client()
    not_found = text(client.get("/no-such-page/").content.decode())
    assert_spanish(not_found, "No encontramos esa página", "¿Necesita ayuda? Comuníquese con el equipo de facturación")
    csrf = Client(enforce_csrf_checks=True)
    csrf.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    expired = text(csrf.post("/pay/code/", {"code": "123456"}).content.decode())
    assert_spanish(expired, "Esta página venció")
    from django.test import RequestFactory

    from alma_billing.core import error_pages

    with translation.override("es"):
        for view, words in [
            (error_pages.server_error, "Algo salió mal de nuestro lado"),
            (error_pages.bad_request, "No pudimos leer esa solicitud"),
            (error_pages.permission_denied, "No puede abrir esta página"),
        ]:
            page = text(view(RequestFactory().get("/")).content.decode())
            assert_spanish(page, words)


def test_codes_are_checked_against_the_spanish_sms_only_in_spanish() -> None:
    invoice = InvoiceFactory(amount_cents=7_000, session__patient__phone="+12025550143")
    client = Client()
    client.post(link_for(invoice), {"phone": "(202) 555-0143"})
    sms = json.loads(sorted(settings.OUTBOX_DIR.glob("*.sms.json"))[-1].read_text())["body"]
    assert sms.startswith("Your Alma billing code is ")
    assert texted_codes()


def test_autopay_consent_refusals_and_the_failed_charge_email_are_in_spanish(
    stripe_api: str, django_capture_on_commit_callbacks: Any
) -> None:
    from invoices.models import Practice
    from payments.models import AutopayEnrollment
    from tests.payments.flows import enroll, new_session_billed, practice_patient

    provider, invoice = practice_patient(Practice.AutopayPolicy.OPTIONAL)
    Patient.objects.filter(pk=invoice.patient_id).update(preferred_language="es")
    client = Client()
    verify(client, link_for(invoice))
    page = text(client.get("/pay/autopay/").content.decode())
    assert_spanish(
        page, "Autorizo a Alma a cobrar a la tarjeta", "Acepto, activar el pago automático", "Es una tarjeta FSA"
    )
    assert 'data-locale="es-419"' in page

    refused = enroll(client, benefit_card=True)
    assert refused["status"] == "refused" and "usted nos indicó que lo es" in refused["message"]
    assert "no para el pago automático" in refused["message"]

    assert enroll(client, number=stripe_fake.DECLINED_AT_CHARGE)["status"] == "enrolled"
    enrollment = AutopayEnrollment.objects.get()
    assert enrollment.consent_language == "es" and enrollment.consent_version == "2026-1"
    assert enrollment.consent_text.startswith("Autorizo a Alma")  # exactly what the patient read and agreed to
    summary = text(client.get("/pay/invoices/").content.decode())
    assert "El pago automático está activado con su Visa que termina en" in summary

    mail.outbox.clear()
    new_session_billed(provider, invoice.patient, django_capture_on_commit_callbacks)
    [failed] = [m for m in mail.outbox if m.subject == "El pago automático de su factura de Alma no se realizó"]
    assert_spanish(str(failed.body), "Hola, Jordan:", "Volveremos a intentarlo el", "Pruebe con otra tarjeta")
