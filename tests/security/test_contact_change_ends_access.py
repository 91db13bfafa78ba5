"""A phone-number or email change by staff ends every verified patient session of that patient at once."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from invoices.models import Invoice, Patient
from tests.factories import InvoiceFactory, PatientFactory
from tests.staff import signed_in
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(session__patient=PatientFactory(phone="+12025550143", email="robin@example.com"))


def _staff_edit(invoice: Invoice, **changes: str) -> None:
    provider = invoice.provider
    provider.user.groups.add(Group.objects.get(name="Providers"))
    staff = signed_in(provider.user)
    patient = invoice.patient
    form = {
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "email": patient.email,
        "phone": str(patient.phone),
        "coverages-TOTAL_FORMS": "0",
        "coverages-INITIAL_FORMS": "0",
        **changes,
    }
    response = staff.post(f"/admin/invoices/patient/{patient.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]


def _verified(invoice: Invoice) -> Client:
    client = Client()
    verify(client, link_for(invoice))
    assert invoice.number in client.get("/pay/invoices/").content.decode()
    return client


@pytest.mark.parametrize("changes", [{"phone": "(617) 555-0100"}, {"email": "someone.else@example.com"}])
def test_p4_a_contact_change_by_staff_ends_every_verified_session(invoice: Invoice, changes: dict[str, str]) -> None:
    phone_tab, laptop = _verified(invoice), _verified(invoice)

    _staff_edit(invoice, **changes)

    for client in (phone_tab, laptop):
        response = client.get("/pay/invoices/")
        page = response.content.decode()
        assert response.status_code == 401
        assert invoice.number not in page and "$120.00" not in page
        assert "contact details on your profile changed" in page and "most recent email" in page
        assert client.get(f"/pay/invoices/{invoice.number}/").status_code == 401  # and it stays ended
    changed = Patient.objects.get(pk=invoice.patient_id)
    assert changed.email == changes.get("email", "robin@example.com")


def test_an_edit_that_leaves_phone_and_email_alone_keeps_the_session(invoice: Invoice) -> None:
    client = _verified(invoice)
    _staff_edit(invoice, first_name="Robyn")
    assert invoice.number in client.get("/pay/invoices/").content.decode()
