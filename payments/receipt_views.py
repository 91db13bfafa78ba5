"""The public receipts page (/pay/receipts/): a patient with nothing open asks for a fresh link to their receipts.

It answers exactly the same whether or not the address is on file (the emails go out through the queue, so the
request does the same work either way), and it is rate-limited per address and per network.
"""

import logging

from django import forms
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext, gettext_lazy

from alma_billing.core.http import client_ip, message_page, patient_page
from payments import receipts

logger = logging.getLogger(__name__)

NOT_AN_EMAIL = gettext_lazy("Enter the email address on your Alma profile, like name@example.com.")
UNAVAILABLE = gettext_lazy(
    "We couldn't take your request just now, and nothing was sent. Please try again in a few minutes."
)
ONLY_THE_FORM = gettext_lazy("This page only takes the form on it. Please open it again and enter your email address.")
_EMAIL_ERRORS = {code: NOT_AN_EMAIL for code in ("required", "invalid", "max_length", "null_characters_not_allowed")}


class ReceiptsLinkForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Email address"), max_length=254, error_messages=_EMAIL_ERRORS)


def _page(request: HttpRequest, context: dict[str, object], status: int = 200) -> HttpResponse:
    return render(request, "payments/receipts_request.html", context, status=status)


@patient_page
def pay_receipts_request(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        response = message_page(request, gettext("Get your receipts"), ONLY_THE_FORM, status=405)
        response["Allow"] = "GET, HEAD, POST"
        return response
    if request.method != "POST":
        return _page(request, {"form": ReceiptsLinkForm(), "sent": request.GET.get("sent") == "1"})
    form = ReceiptsLinkForm(request.POST)
    if len(request.POST.getlist("email")) > 1:  # one address per request: a list is not guessed at
        form.add_error("email", NOT_AN_EMAIL)
    if not form.is_valid():
        raw = str(request.POST.get("email", ""))
        echo = raw if len(raw) <= 254 and raw.isprintable() else ""  # never echo a huge or binary value
        return _page(request, {"form": form, "echo": echo}, status=400)
    try:
        accepted = receipts.receipts_link_request(address=form.cleaned_data["email"], ip=client_ip(request))
    except DatabaseError:
        logger.exception("receipts link request not recorded")
        return message_page(request, gettext("Get your receipts"), UNAVAILABLE, status=503)
    if not accepted:
        return _page(request, {"limited": True}, status=429)
    # The same answer for a known and an unknown address; a reload does not ask again.
    return redirect("/pay/receipts/?sent=1")
