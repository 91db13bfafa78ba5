"""Verified access: after a correct code the session is bound to one patient for 15 idle minutes (2 hours at most),
and to the phone number and email on the profile at that moment: once staff change either, the session ends."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy

from alma_billing.core.http import message_page, patient_page
from invoices.models import Patient

ACCESS_KEY = "patient_access"
PENDING_KEY = "patient_pending"
ENDED = gettext_lazy(
    "For your security, your secure session has ended. Please open the link in your invoice email again."
)
CONTACT_CHANGED = gettext_lazy(
    "The contact details on your profile changed, so your secure session has ended. "
    "Please open the link in your most recent email from Alma."
)


def _contact_fingerprint(patient_id: int) -> str | None:
    """A keyed digest of the phone number and email on the profile (the session never holds them); None if the
    patient is gone. Verified access is bound to it, so a change of either by staff ends every verified session."""
    row = Patient.objects.filter(pk=patient_id).values_list("phone", "email").first()
    if row is None:
        return None
    phone, email = row
    return salted_hmac("alma.verified-access.contact", f"{phone}|{(email or '').lower()}").hexdigest()[:32]


def access_grant(request: HttpRequest, *, patient_id: int, link_id: int) -> None:
    request.session.cycle_key()  # a new session key, so a key seen before verification is worthless after
    now = timezone.now().timestamp()
    request.session.pop(PENDING_KEY, None)
    request.session[ACCESS_KEY] = {
        "patient_id": patient_id,
        "link_id": link_id,
        "verified_at": now,
        "seen_at": now,
        "contact": _contact_fingerprint(patient_id),
    }


def access_end(request: HttpRequest) -> None:
    request.session.flush()


def verified_access(request: HttpRequest) -> tuple[int | None, str | Promise]:
    """The patient this browser verified as, or None with the reason to show: idle or absolute limits passed, or
    the phone number or email on the profile changed since the code was checked."""
    access = request.session.get(ACCESS_KEY)
    if not access:
        return None, ENDED
    now = timezone.now().timestamp()
    if (
        now - access["seen_at"] > settings.PATIENT_ACCESS_IDLE.total_seconds()
        or now - access["verified_at"] > settings.PATIENT_ACCESS_MAX.total_seconds()
    ):
        request.session.pop(ACCESS_KEY, None)
        return None, ENDED
    patient_id = int(access["patient_id"])
    fingerprint = access.get("contact")
    if fingerprint is None or fingerprint != _contact_fingerprint(patient_id):
        request.session.pop(ACCESS_KEY, None)
        return None, CONTACT_CHANGED
    if now - access["seen_at"] > 60:  # a session write per minute at most, not one per page view
        access["seen_at"] = now
        request.session.modified = True
    return patient_id, ""


def verified_patient_id(request: HttpRequest) -> int | None:
    """The patient this browser verified as, or None once the access ended (see verified_access)."""
    return verified_access(request)[0]


def verified_patient_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        patient_id, reason = verified_access(request)
        if patient_id is None:
            return message_page(request, gettext("Session ended"), reason, status=401)
        return view(request, *args, patient_id=patient_id, **kwargs)

    return wrapped


def verified_patient_page(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A patient page behind verification: security headers, allowed methods, and the verified patient's id."""
    from django.views.decorators.http import require_http_methods

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return patient_page(require_http_methods(list(methods))(verified_patient_required(view)))

    return decorate
