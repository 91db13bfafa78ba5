"""P4 (shell): the emailed link is a hashed, expiring bearer token whose page shows nothing about the patient."""

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import InvoiceFactory
from verification.models import PayLink
from verification.services import pay_link_create, pay_link_find

pytestmark = pytest.mark.django_db


def test_p4_token_has_256_bits_and_only_its_hash_is_stored() -> None:
    invoice = InvoiceFactory()
    link, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    assert len(token) == 43  # 32 random bytes, base64url
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not PayLink.objects.filter(token_hash=token).exists()
    assert pay_link_find(token) == link
    assert pay_link_find(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_p4_link_opens_the_phone_page_and_shows_nothing_about_the_patient(client: Client) -> None:
    invoice = InvoiceFactory(amount_cents=12_345)
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)

    response = client.get(f"/pay/{token}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_phone">Phone number</label>' in page
    assert ">Continue</button>" in page
    for secret in (
        invoice.patient.first_name,
        invoice.patient.last_name,
        invoice.provider.display_name,
        "123.45",
        "555",
        invoice.number,
    ):
        assert secret not in page


def test_p4_unknown_link_says_what_to_do(client: Client) -> None:
    response = client.get("/pay/" + "x" * 43 + "/")
    assert response.status_code == 404
    assert "most recent invoice email" in response.content.decode()


def test_p4_expired_link_says_what_to_do(client: Client) -> None:
    invoice = InvoiceFactory()
    link, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    PayLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get(f"/pay/{token}/")

    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
