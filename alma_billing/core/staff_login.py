"""Staff sign-in: the admin site that needs a second factor, its login form, and login events in the audit trail."""

import ipaddress
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from alma_billing.core.audit import Actor, AuditAction, audit_record
from alma_billing.core.http import client_ip
from alma_billing.core.models import AuditEvent


def staff_client_ip(request: HttpRequest) -> str | None:
    """`client_ip` (the one the patient limits use), kept only when it is an address: axes and audit rows store it
    in an address column, and a malformed X-Forwarded-For must not turn a login into an error page."""
    for candidate in (client_ip(request), request.META.get("REMOTE_ADDR")):
        try:
            return str(ipaddress.ip_address(candidate or ""))
        except ValueError:
            continue
    return None


class StaffLoginForm(OTPAdminAuthenticationForm):
    """Username, password and one code: a 6-digit code from the authenticator app, or a recovery code.

    The code's shape picks the device, so nobody chooses from a list and a code is only tried against one device
    (trying every device would count failures against, and throttle, the ones not used)."""

    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": "Enter the 6-digit code from your authenticator app, or one of your recovery codes.",
        "invalid_token": "That code is not right, or was already used. Try the code your app shows now, "
        "or another recovery code.",
        "device_required": "That code is not right. Enter the 6-digit code from your app, or a recovery code.",
    }

    otp_token = forms.CharField(
        required=False,
        max_length=64,
        label="Authenticator code or recovery code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "none"}),
    )

    def clean_username(self) -> str:
        # AuthenticationForm only sets the input's maxlength; a longer name would reach authenticate() and axes,
        # whose attempt row cannot hold it (a database error, i.e. a 500, instead of "wrong username").
        username = self.cleaned_data.get("username", "")
        limit = self.fields["username"].max_length or 150
        if len(username) > limit:
            raise forms.ValidationError(f"A username has at most {limit} characters.", code="max_length")
        return username

    def clean_otp_token(self) -> str:
        return "".join(self.cleaned_data.get("otp_token", "").split()).lower()

    def clean_otp(self, user: Any) -> None:
        if user is not None and not list(devices_for_user(user, confirmed=True)):
            raise forms.ValidationError(
                f"This account has no second factor yet. Ask {settings.STAFF_HELP_CONTACT} to enroll one.",
                code="no_device",
            )
        try:
            super().clean_otp(user)
        except forms.ValidationError as error:
            if user is not None and error.code != "token_required":
                # A right password with a wrong code: the password may be known to someone else. Ops should see it.
                _record_attempt(
                    AuditAction.STAFF_SECOND_FACTOR_FAILED,
                    self.request,
                    user.get_username(),
                    reason=error.code or "throttled",
                )
            raise

    def _chosen_device(self, user: Any) -> Device | None:
        devices = list(devices_for_user(user, confirmed=True))
        wanted = self.cleaned_data.get("otp_device")
        if wanted:
            # Only the user's own devices: django-otp would otherwise look up whatever model the field names.
            match = next((device for device in devices if device.persistent_id == wanted), None)
        else:
            token = self.cleaned_data.get("otp_token") or ""
            kind = TOTPDevice if token.isascii() and token.isdigit() and len(token) == 6 else StaticDevice
            match = next((device for device in devices if isinstance(device, kind)), None)
        if match is None:
            return None
        # Locked for the check (select_for_update), so one code cannot be used twice at once.
        return Device.from_persistent_id(match.persistent_id, for_verify=True)


class StaffAdminSite(OTPAdminSite):
    """The admin: only staff verified by an enrolled device (authenticator or recovery code) get past the login."""

    site_header = "Alma billing"
    site_title = "Alma billing"
    site_url = None  # no "View site" link: the patient pages open only from an emailed link
    index_template = "admin/alma_index.html"
    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().each_context(request), "staff_help_contact": settings.STAFF_HELP_CONTACT}


def staff_lockout_response(request: HttpRequest, original_response: Any, credentials: Any) -> HttpResponse:
    """What a locked-out login sees (AXES_LOCKOUT_CALLABLE): what happened and whom to ask, as an admin page."""
    from django.contrib import admin

    context = {
        **admin.site.each_context(request),
        "title": "Sign-in locked",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff": settings.AXES_COOLOFF_TIME,
    }
    return render(request, "admin/staff_locked_out.html", context, status=429)  # Too Many Requests


# Audit trail of sign-ins: who, from which address (proxy-aware), never what was typed.


def _user_named(username: Any) -> Any:
    User = get_user_model()
    if not isinstance(username, str) or not 0 < len(username) <= 150 or "\x00" in username:
        return None
    return User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()


def _record_attempt(action: AuditAction, request: HttpRequest | None, username: Any, **data: Any) -> None:
    """An event about a login attempt: the actor is whoever typed, so it is anonymous; the object is the account."""
    ip = staff_client_ip(request) if request is not None else None
    actor = Actor(label="anonymous", ip=ip)
    user = _user_named(username)
    if user is not None:
        audit_record(actor=actor, action=action, obj=user, **data)
    else:  # no such account: keep the address and time, not the typed name (it is often a misplaced password)
        AuditEvent.objects.create(
            actor_label=actor.label,
            action=action,
            object_type="auth.user",
            object_id="unknown",
            ip_address=ip,
            data=data,
        )


def staff_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    ip = staff_client_ip(request) if request is not None else None
    device = getattr(user, "otp_device", None)
    audit_record(
        actor=Actor.staff(user, ip=ip),
        action=AuditAction.STAFF_LOGIN,
        obj=user,
        second_factor=type(device).__name__ if device is not None else None,
    )


def staff_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:  # the session had already ended
        return
    ip = staff_client_ip(request) if request is not None else None
    audit_record(actor=Actor.staff(user, ip=ip), action=AuditAction.STAFF_LOGOUT, obj=user)


def staff_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is not None and getattr(request, "axes_locked_out", False):
        return  # refused while locked out (or the attempt that locked it): the lockout event tells it, once
    _record_attempt(AuditAction.STAFF_LOGIN_FAILED, request, credentials.get("username"))


def staff_locked_out(sender: Any, request: HttpRequest | None, username: Any, **kwargs: Any) -> None:
    # Axes sends this for the failure that crosses the limit and again for every attempt during the lockout; only
    # the first has counted a failure (axes_failures_since_start is set), so the lock is recorded once.
    if request is not None and getattr(request, "axes_failures_since_start", None) is None:
        return
    _record_attempt(AuditAction.STAFF_LOCKED_OUT, request, username, failure_limit=settings.AXES_FAILURE_LIMIT)


def audit_receivers_connect() -> None:
    from axes.signals import user_locked_out

    user_logged_in.connect(staff_logged_in, dispatch_uid="alma-staff-login")
    user_logged_out.connect(staff_logged_out, dispatch_uid="alma-staff-logout")
    user_login_failed.connect(staff_login_failed, dispatch_uid="alma-staff-login-failed")
    user_locked_out.connect(staff_locked_out, dispatch_uid="alma-staff-locked-out")
