"""Signing staff into the admin in tests: the session a real login leaves, second factor included."""

from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice


def staff_login(client: Client, user: Any) -> Client:
    """`client.force_login(user)` and mark the session verified by one of the user's devices, as the OTP login
    does. The admin refuses a session without it, so admin tests use this instead of force_login alone."""
    client.force_login(user)
    device, _ = StaticDevice.objects.get_or_create(user=user, name="test device", defaults={"confirmed": True})
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def signed_in(user: Any) -> Client:
    """A new client signed in as `user`, second factor included."""
    return staff_login(Client(), user)
