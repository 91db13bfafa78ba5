"""Patient pages: the emailed link, phone number, SMS code, then the verified summary (P4).

Nothing about the patient, provider or amount is shown before the code is accepted. After the link is opened
the token is kept in the server-side session, so later URLs (and the browser history) never carry it.
"""

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.html import escape
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from alma_billing.core import language
from alma_billing.core.error_pages import support_contact
from alma_billing.core.http import client_ip, message_page, patient_page
from verification import services
from verification.access import (
    PENDING_KEY,
    access_end,
    access_grant,
    verified_patient_id,
)
from verification.models import PayLink
from verification.services import Step

LINK_UNKNOWN = gettext_lazy(
    "This link isn't valid. Please open the link in the most recent invoice email from Alma, "
    "or contact your provider for a new one."
)
LINK_EXPIRED = gettext_lazy(
    "This link has expired. Please use the link in your most recent invoice email or reminder from Alma, "
    "or contact your provider for a new one."
)
LINK_REVOKED = gettext_lazy(
    "This link has been replaced. Please use the link in your most recent email from Alma, "
    "or contact your provider for a new one."
)
START_AGAIN = gettext_lazy("Your code request has ended. Please open the link in your invoice email again.")
STATUS_FOR = {Step.INVALID: 400, Step.REFUSED: 400, Step.LOCKED: 429, Step.WAIT: 429, Step.UNAVAILABLE: 503}


class PhoneForm(forms.Form):
    phone = forms.CharField(label=gettext_lazy("Phone number"), max_length=32)


class CodeForm(forms.Form):
    code = forms.CharField(label=gettext_lazy("Verification code"), max_length=12)


def _problem(request: HttpRequest, heading: str, message: str | Promise, status: int) -> HttpResponse:
    return message_page(request, heading, message, status=status)


def _locked(request: HttpRequest, template: str, message: str | Promise) -> HttpResponse:
    """A locked page: the message, and no form that could only be refused."""
    return render(request, template, {"locked": message}, status=429)


# The landing's phone form, as a GET of a link shows it (a fresh form, no lock, no message queued), is the same page
# for everyone who reads it in one language but for two values: the CSRF token and the page's own path in the
# language switch's `next` field. So it is rendered once per language, with markers in their place, and each request
# fills them in: the template engine was a third of the landing's time (docs/performance.md, issue 14). A settings
# change (tests) forgets the pages; with DEBUG every request renders, so an edited template shows at once.
# tests/verification/test_landing.py checks the page is byte for byte what the full render gives.
_CSRF_MARK = "\x00csrf-token\x00"
_PATH_MARK = "\x00full-path\x00"
_phone_pages: dict[str, str] = {}


class _MarkedRequest:
    """The one thing the page reads of the request (base.html's language switch), as a marker."""

    def get_full_path(self) -> str:
        return _PATH_MARK


def _phone_pages_forget(**kwargs: Any) -> None:
    _phone_pages.clear()


setting_changed.connect(_phone_pages_forget, dispatch_uid="verification-phone-pages-forget")


def _phone_page(request: HttpRequest) -> HttpResponse:
    """The phone form of a GET: what render() gives for {"form": PhoneForm()}, without running the template."""
    if settings.DEBUG or len(get_messages(request)):  # a queued message shows on this page: the full render
        return render(request, "verification/phone.html", {"form": PhoneForm()})
    language_code = translation.get_language()
    page = _phone_pages.get(language_code)
    if page is None:
        context = {
            "form": PhoneForm(),
            "csrf_token": _CSRF_MARK,
            "request": _MarkedRequest(),
            **support_contact(request),
        }
        page = _phone_pages[language_code] = render_to_string("verification/phone.html", context)
    page = page.replace(_CSRF_MARK, get_token(request)).replace(_PATH_MARK, escape(request.get_full_path()))
    return HttpResponse(page)


def _link_problem(request: HttpRequest, link: PayLink | None) -> HttpResponse | None:
    if link is None:
        return _problem(request, gettext("Link not recognized"), LINK_UNKNOWN, 404)
    if link.revoked_at is not None:
        return _problem(request, gettext("Link replaced"), LINK_REVOKED, 410)
    if link.is_expired:
        return _problem(request, gettext("Link expired"), LINK_EXPIRED, 410)
    return None


@patient_page
@require_http_methods(["GET", "POST"])
def pay_link_landing(request: HttpRequest, token: str) -> HttpResponse:
    opened = services.pay_link_open(token)  # the link and the patient's recent failures: one statement
    link = opened.link if opened else None
    problem = _link_problem(request, link)
    if problem or opened is None or link is None:
        return problem or _problem(request, gettext("Link not recognized"), LINK_UNKNOWN, 404)
    if request.method == "GET" and verified_patient_id(request) == link.patient_id:
        return redirect("pay-summary")  # already verified in this browser: no second code
    if request.method == "GET":
        locked = services.patient_locked(patient_id=link.patient_id, failed_recently=opened.failed_recently)
        if locked:
            return _locked(request, "verification/phone.html", locked)
        return _phone_page(request)
    form = PhoneForm(request.POST or None)
    if form.is_valid():
        result = services.phone_submit(link=link, raw_phone=form.cleaned_data["phone"], ip=client_ip(request))
        if result.step == Step.OK:
            request.session[PENDING_KEY] = {"link_id": link.pk, "sent_at": timezone.now().timestamp()}
            return redirect("pay-code")
        if result.step == Step.LOCKED:
            return _locked(request, "verification/phone.html", result.message)
        form.add_error("phone" if result.step in (Step.INVALID, Step.REFUSED) else None, str(result.message))
        return render(request, "verification/phone.html", {"form": form}, status=STATUS_FOR[result.step])
    return render(request, "verification/phone.html", {"form": form}, status=400)


def _pending_link(request: HttpRequest) -> tuple[PayLink, datetime] | None:
    pending = request.session.get(PENDING_KEY)
    if not pending:
        return None
    link = PayLink.objects.select_related("patient").filter(pk=pending["link_id"]).first()
    if link is None or _link_problem(request, link) is not None:
        return None
    return link, datetime.fromtimestamp(pending["sent_at"], tz=UTC)


@patient_page
@require_http_methods(["GET", "POST"])
def pay_code(request: HttpRequest) -> HttpResponse:
    pending = _pending_link(request)
    if pending is None:
        return _problem(request, gettext("Start again"), START_AGAIN, 400)
    link, sent_at = pending
    if request.method == "GET":
        locked = services.patient_locked(patient_id=link.patient_id)
        if locked:
            return _locked(request, "verification/code.html", locked)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = services.code_submit(
            link=link, raw_code=form.cleaned_data["code"], sent_at=sent_at, ip=client_ip(request)
        )
        if result.step == Step.OK:
            access_grant(request, patient_id=link.patient_id, link_id=link.pk)
            language.remember_at_verification(request, link.patient)
            return redirect("pay-summary")
        if result.step == Step.LOCKED:
            return _locked(request, "verification/code.html", result.message)
        form.add_error("code" if result.step in (Step.INVALID, Step.REFUSED) else None, str(result.message))
        return render(request, "verification/code.html", {"form": form}, status=STATUS_FOR[result.step])
    status = 400 if request.method == "POST" else 200
    return render(request, "verification/code.html", {"form": form, "resent": "resent" in request.GET}, status=status)


@patient_page
@require_POST
def pay_code_resend(request: HttpRequest) -> HttpResponse:
    pending = _pending_link(request)
    if pending is None:
        return _problem(request, gettext("Start again"), START_AGAIN, 400)
    link, _ = pending
    result = services.code_send(link=link, ip=client_ip(request))
    if result.step == Step.LOCKED:
        return _locked(request, "verification/code.html", result.message)
    if result.step != Step.OK:
        context = {"form": CodeForm(), "alert": result.message}
        return render(request, "verification/code.html", context, status=STATUS_FOR[result.step])
    request.session[PENDING_KEY] = {"link_id": link.pk, "sent_at": timezone.now().timestamp()}
    return redirect("/pay/code/?resent=1")


@patient_page
@require_POST
def pay_sign_out(request: HttpRequest) -> HttpResponse:
    access_end(request)
    return _problem(request, gettext("Signed out"), gettext("You're signed out. You can close this page."), 200)
