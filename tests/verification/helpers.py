"""Test helpers for the patient access flow: open a link, enter a phone, read the texted code."""

import json
import re

from django.conf import settings
from django.test import Client
from django.test.client import Client as ClientType

from invoices.models import Invoice
from verification.services import pay_link_create


def link_for(invoice: Invoice) -> str:
    _, token = pay_link_create(patient=invoice.patient, invoice=invoice)
    return f"/pay/{token}/"


def texted_codes() -> list[str]:
    folder = settings.OUTBOX_DIR
    if not folder.exists():
        return []
    messages = [json.loads(p.read_text()) for p in sorted(folder.glob("*.sms.json"))]
    return [re.search(r"\b(\d{6})\b", m["body"]).group(1) for m in messages]  # type: ignore[union-attr]


def verify(client: ClientType, url: str, phone: str = "(202) 555-0143", ip: str = "198.51.100.7") -> None:
    """Walk a client through phone and code to the summary."""
    client.get(url, REMOTE_ADDR=ip)
    response = client.post(url, {"phone": phone}, REMOTE_ADDR=ip)
    assert response.status_code == 302, response.content.decode()[:2000]
    response = client.post("/pay/code/", {"code": texted_codes()[-1]}, REMOTE_ADDR=ip)
    assert response.status_code == 302 and response["Location"] == "/pay/invoices/", response.status_code


def new_client() -> Client:
    return Client()
