"""Patient pages: the emailed link, phone number, SMS code, then the verified summary (P4).

Nothing about the patient, provider or amount is shown before the code is accepted. After the link is opened
the token is kept in the server-side session, so later URLs (and the browser history) never carry it.
"""

from datetime import UTC, datetime

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from alma_billing.core import language
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
    form = PhoneForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = services.phone_submit(link=link, raw_phone=form.cleaned_data["phone"], ip=client_ip(request))
        if result.step == Step.OK:
            request.session[PENDING_KEY] = {"link_id": link.pk, "sent_at": timezone.now().timestamp()}
            return redirect("pay-code")
        if result.step == Step.LOCKED:
            return _locked(request, "verification/phone.html", result.message)
        form.add_error("phone" if result.step in (Step.INVALID, Step.REFUSED) else None, str(result.message))
        return render(request, "verification/phone.html", {"form": form}, status=STATUS_FOR[result.step])
    status = 400 if request.method == "POST" else 200
    return render(request, "verification/phone.html", {"form": form}, status=status)


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
