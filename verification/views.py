"""Patient entry point: the emailed pay link. Nothing about the patient is shown before verification (P4)."""

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from verification.models import PayLink
from verification.services import pay_link_find

LINK_UNKNOWN = (
    "This link isn't valid. Please open the link in the most recent invoice email from Alma, "
    "or contact your provider for a new one."
)
LINK_EXPIRED = (
    "This link has expired. Please use the link in your most recent invoice email or reminder from Alma, "
    "or contact your provider for a new one."
)


class PhoneForm(forms.Form):
    phone = forms.CharField(label="Phone number", max_length=32)


def _link_problem(request: HttpRequest, heading: str, message: str, status: int) -> HttpResponse:
    return render(request, "verification/link_problem.html", {"heading": heading, "message": message}, status=status)


def _usable_link(request: HttpRequest, token: str) -> PayLink | HttpResponse:
    link = pay_link_find(token)
    if link is None:
        return _link_problem(request, "Link not recognized", LINK_UNKNOWN, 404)
    if link.is_expired:
        return _link_problem(request, "Link expired", LINK_EXPIRED, 410)
    return link


def pay_link_landing(request: HttpRequest, token: str) -> HttpResponse:
    link = _usable_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    return render(request, "verification/phone.html", {"form": PhoneForm()})
