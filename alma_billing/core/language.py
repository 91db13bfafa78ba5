"""The patient's language: the switch on every patient page, and a verified patient's preferred language.

Order of precedence: the patient's explicit choice (the language cookie, set by the switch), else the preferred
language on the verified patient's profile (staff set it in the admin; kept in the session when the code is
accepted, so no page pays a query for it), else the browser's Accept-Language (Django's LocaleMiddleware).
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from alma_billing.core.audit import Actor, AuditAction, audit_record
from alma_billing.core.http import client_ip, patient_page
from invoices.models import Patient
from verification.access import verified_patient_id

# The verified patient's preferred language, stored in the session with the verified access.
SESSION_KEY = "patient_language"


def supported(code: str | None) -> str | None:
    """`code` if it is one of settings.LANGUAGES, else None."""
    return code if code in dict(settings.LANGUAGES) else None


class PatientLanguageMiddleware:
    """After LocaleMiddleware: with no explicit choice (no language cookie), a verified patient's pages use the
    preferred language on their profile."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/admin/"):
            # The staff side is English only: no half-translated admin for a browser that prefers Spanish.
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = settings.LANGUAGE_CODE
            return self.get_response(request)
        if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES and hasattr(request, "session"):
            preferred = supported(request.session.get(SESSION_KEY))
            if preferred:
                translation.activate(preferred)
                request.LANGUAGE_CODE = preferred
        return self.get_response(request)


def remember_at_verification(request: HttpRequest, patient: Any) -> None:
    """The code was accepted: a language the patient chose before (the cookie) becomes their preferred language;
    otherwise their preferred language applies from now on."""
    chosen = supported(request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
    if chosen and chosen != patient.preferred_language:
        _save_preference(request, patient.pk, chosen)
    request.session[SESSION_KEY] = chosen or patient.preferred_language


def _save_preference(request: HttpRequest, patient_id: int, language: str) -> None:
    with transaction.atomic():
        patient = Patient.objects.select_for_update().filter(pk=patient_id).first()
        if patient is not None and patient.preferred_language != language:
            patient.preferred_language = language
            patient.save(update_fields=["preferred_language"])
            audit_record(
                actor=Actor.patient(patient_id, ip=client_ip(request)),
                action=AuditAction.PATIENT_LANGUAGE_CHANGED,
                obj=patient,
                language=language,
            )


@patient_page
@require_POST
def language_switch(request: HttpRequest) -> HttpResponse:
    """The "Español" / "English" switch: remember the choice in the language cookie and, for a verified patient,
    on their profile (emails, SMS and receipts follow it). Then back to the page the patient was on."""
    language = supported(request.POST.get("language")) or settings.LANGUAGE_CODE
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        target = "/pay/invoices/"
    patient_id = verified_patient_id(request)
    if patient_id is not None:
        _save_preference(request, patient_id, language)
        request.session[SESSION_KEY] = language
    response = HttpResponseRedirect(target)
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite="Lax",
    )
    return response
