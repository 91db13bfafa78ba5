"""Signing staff into the admin in these tests, with the second factor once the admin asks for one."""

import importlib
from typing import Any

from django.test import Client


def signed_in(user: Any) -> Client:
    """A client signed in as `user`. Where the admin requires a verified second factor (`tests.staff.staff_login`,
    from the staff-access work), that helper is used; before it, `force_login` is all the admin needs."""
    client = Client()
    try:
        staff = importlib.import_module("tests.staff")
    except ImportError:
        client.force_login(user)
        return client
    return staff.staff_login(client, user)
