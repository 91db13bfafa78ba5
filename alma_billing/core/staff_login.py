"""Staff sign-in: the admin site that needs a second factor, its login form."""

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice


class StaffLoginForm(OTPAdminAuthenticationForm):
    """Username, password and one code: a 6-digit code from the authenticator app, or a recovery code.

    The code's shape picks the device, so nobody chooses from a list and a code is only tried against one device
    (trying every device would count failures against, and throttle, the ones not used)."""

    otp_token = forms.CharField(
        required=False,
        max_length=64,
        label="Authenticator code or recovery code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "none"}),
    )

    def clean_otp_token(self) -> str:
        return "".join(self.cleaned_data.get("otp_token", "").split()).lower()

    def clean_otp(self, user: Any) -> None:
        if user is not None and not list(devices_for_user(user, confirmed=True)):
            raise forms.ValidationError(
                f"This account has no second factor yet. Ask {settings.STAFF_HELP_CONTACT} to enroll one.",
                code="no_device",
            )
        super().clean_otp(user)

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
    index_template = "admin/alma_index.html"
    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().each_context(request), "staff_help_contact": settings.STAFF_HELP_CONTACT}
