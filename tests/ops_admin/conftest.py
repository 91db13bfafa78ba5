"""Staff clients for the ops-admin tests: an ops user, a provider, and a superuser, each signed in with a second
factor as the admin requires."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from tests.factories import ProviderFactory
from tests.staff import signed_in


@pytest.fixture
def ops_user() -> Any:
    user = get_user_model().objects.create_user("ops-reviewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    return user


@pytest.fixture
def ops(ops_user: Any) -> Client:
    return signed_in(ops_user)


@pytest.fixture
def provider() -> Any:
    provider = ProviderFactory(display_name="Dr. Own")
    provider.user.groups.add(Group.objects.get(name="Providers"))
    return provider


@pytest.fixture
def provider_client(provider: Any) -> Client:
    return signed_in(provider.user)


@pytest.fixture
def superuser_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@alma.invalid", "x")
    return signed_in(user)
