"""The language switch on every patient page, the patient's preferred language, and `<html lang>`."""

import pytest
from django.conf import settings
from django.test import Client

from invoices.models import Invoice, Patient
from tests.factories import InvoiceFactory, PatientFactory
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(amount_cents=7_000, session__patient__phone="+12025550143")


def test_every_patient_page_has_the_switch_and_html_lang_follows_it(invoice: Invoice) -> None:
    client = Client()
    url = link_for(invoice)
    page = client.get(url).content.decode()
    assert '<html lang="en">' in page
    assert ">Español</button>" in page and ">English</button>" in page

    response = client.post("/pay/language/", {"language": "es", "next": url})
    assert response.status_code == 302 and response["Location"] == url
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"
    page = client.get(url).content.decode()
    assert '<html lang="es">' in page
    assert ">Español</button>" in page and ">English</button>" in page


def test_the_switch_never_redirects_off_the_site() -> None:
    response = Client().post("/pay/language/", {"language": "es", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/pay/invoices/"


def test_an_unknown_language_falls_back_to_english() -> None:
    response = Client().post("/pay/language/", {"language": "xx", "next": "/pay/invoices/"})
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"


def test_a_verified_patients_choice_is_saved_on_the_profile(invoice: Invoice) -> None:
    client = Client()
    verify(client, link_for(invoice))
    client.post("/pay/language/", {"language": "es", "next": "/pay/invoices/"})
    patient = Patient.objects.get(pk=invoice.patient_id)
    assert patient.preferred_language == "es"


def test_the_preferred_language_applies_until_the_patient_chooses(invoice: Invoice) -> None:
    Patient.objects.filter(pk=invoice.patient_id).update(preferred_language="es")
    client = Client()
    verify(client, link_for(invoice))
    assert '<html lang="es">' in client.get("/pay/invoices/").content.decode()

    client.post("/pay/language/", {"language": "en", "next": "/pay/invoices/"})
    assert '<html lang="en">' in client.get("/pay/invoices/").content.decode()
    assert Patient.objects.get(pk=invoice.patient_id).preferred_language == "en"


def test_staff_set_the_preferred_language_in_the_admin_which_stays_english() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from tests.staff import staff_login

    patient = PatientFactory(phone="+14155550132")
    user = get_user_model().objects.create_user("ops-lang", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    client = Client(HTTP_ACCEPT_LANGUAGE="es")
    staff_login(client, user)
    url = f"/admin/invoices/patient/{patient.pk}/change/"
    form = client.get(url).content.decode()
    assert 'name="preferred_language"' in form and "Save" in form  # the admin is not half-translated
    response = client.post(
        url,
        {
            "first_name": patient.first_name,
            "last_name": patient.last_name,
            "email": patient.email,
            "phone": "(415) 555-0132",
            "preferred_language": "es",
            "coverages-TOTAL_FORMS": "0",
            "coverages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Patient.objects.get(pk=patient.pk).preferred_language == "es"


def test_a_choice_made_before_verification_becomes_the_preferred_language(invoice: Invoice) -> None:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    verify(client, link_for(invoice))
    assert Patient.objects.get(pk=invoice.patient_id).preferred_language == "es"
