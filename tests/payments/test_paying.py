"""P5, P8, P10-P12: paying one, the most recent, all, or a chosen invoice by card, through localstripe."""

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from invoices.models import Invoice
from payments.models import Payment, PaymentAllocation
from tests.factories import PatientFactory
from tests.payments import stripe_fake
from tests.payments.flows import card_page, checkout, confirm, open_invoices, pay, pdf_text, verified_client
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db


def statuses(invoices: list[Invoice]) -> list[str]:
    return [Invoice.objects.get(pk=i.pk).status for i in invoices]


def test_p10_one_open_invoice_prompts_for_the_amount_and_is_paid(
    stripe_api, patient, django_capture_on_commit_callbacks
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)

    summary = client.get("/pay/invoices/").content.decode()
    assert 'You owe <strong class="amount">$70.00</strong>' in summary
    assert "disabled>Pay $70.00</button>" in summary  # the card is taken on the summary (enabled by pay.js)
    assert "Pay most recent invoice" not in summary

    with django_capture_on_commit_callbacks(execute=True):
        result = pay(client, "all")

    assert result["status"] == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.paid_at is not None
    payment = Payment.objects.get()
    assert payment.amount_cents == 7_000 and payment.card_brand == "visa" and payment.card_last4 == "4242"
    page = client.get(result["redirect"]).content.decode()
    assert "Payment received" in page and "Download receipt" in page
    assert "no unpaid invoices" in client.get("/pay/invoices/").content.decode()
    # The card the patient did not ask us to keep is detached after the payment settled.
    method = stripe_fake.client().v1.payment_methods.retrieve(payment.stripe_payment_method_id)
    assert not method.customer


def test_p8_receipt_email_is_discreet_and_the_pdf_is_itemized_for_fsa(
    stripe_api, patient, django_capture_on_commit_callbacks
) -> None:
    older, newer = open_invoices(patient, 4_000, 7_000)
    client = verified_client(older)
    with django_capture_on_commit_callbacks(execute=True):
        result = pay(client, "all")
    payment = Payment.objects.get()

    receipts = [m for m in mail.outbox if m.subject == "Your payment to Alma was received"]
    assert len(receipts) == 1
    body = receipts[0].body
    assert "$110.00" in body and payment.reference in body and "ending in 4242" in body
    for private in (older.provider.display_name, older.session.cpt_code, "therap", "session"):
        assert private not in body

    response = client.get(f"/pay/payments/{payment.pk}/receipt.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    text = pdf_text(response.content)
    for expected in (
        older.number,
        newer.number,
        older.provider.display_name,
        older.provider.npi,
        "90837",
        "$40.00",
        "$70.00",
        "$110.00",
        "ending in 4242",
        "FSA, HSA or HRA",
        f"{older.session.date_of_service:%m/%d/%Y}",
    ):
        assert expected in text, expected
    assert result["redirect"] == f"/pay/payments/{payment.pk}/"


def test_p11_several_invoices_offer_most_recent_and_all_with_amounts(stripe_api, patient) -> None:
    invoices = open_invoices(patient, 4_000, 5_500, 7_000)
    client = verified_client(invoices[0])

    page = client.get("/pay/invoices/").content.decode()
    assert "You have 3 unpaid invoices totaling <strong>$165.00</strong>" in page
    assert re.search(r"Pay most recent invoice <span class=\"sub\">\$70\.00", page)
    assert re.search(r"Pay all outstanding <span class=\"sub\">\$165\.00 for 3 invoices", page)
    assert ">Details</button>" in page

    assert pay(client, "recent")["status"] == "succeeded"
    assert statuses(invoices) == ["open", "open", "paid"]
    assert Payment.objects.get().amount_cents == 7_000

    assert pay(client, "all")["status"] == "succeeded"
    assert statuses(invoices) == ["paid", "paid", "paid"]
    assert Payment.objects.order_by("id").last().amount_cents == 9_500  # type: ignore[union-attr]


def test_p12_details_lists_oldest_first_and_pays_the_chosen_one(stripe_api, patient) -> None:
    invoices = open_invoices(patient, 4_000, 5_500, 7_000)
    client = verified_client(invoices[0])

    details = client.get("/pay/invoices/details/").content.decode()
    positions = [details.index(i.number) for i in invoices]
    assert positions == sorted(positions)
    assert details.count("Pay this invoice") == 3

    assert pay(client, f"invoice:{invoices[0].number}")["status"] == "succeeded"
    assert statuses(invoices) == ["paid", "open", "open"]
    assert client.get("/pay/invoices/details/").content.decode().count("Pay this invoice") == 2


def test_p11_paid_and_processing_invoices_are_never_offered(stripe_api, patient) -> None:
    invoices = open_invoices(patient, 4_000, 7_000)
    client = verified_client(invoices[0])
    result = pay(client, "recent", card=stripe_fake.THREE_D_SECURE)  # waits for the card check
    assert result["status"] == "requires_action"
    assert statuses(invoices) == ["open", "processing"]

    page = client.get("/pay/invoices/").content.decode()
    assert 'You owe <strong class="amount">$40.00</strong>' in page  # only the open one is payable
    assert "Payment processing" in page
    # Choosing the processing invoice again is refused; nothing new is charged.
    response = client.post("/pay/checkout/", {"choice": f"invoice:{invoices[1].number}"})
    assert response["Location"] == "/pay/invoices/"
    assert Payment.objects.count() == 1


def test_p5_declined_card_says_why_changes_nothing_and_another_card_works(
    stripe_api, patient, django_capture_on_commit_callbacks
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)

    with django_capture_on_commit_callbacks(execute=True):
        result = pay(client, "all", card=stripe_fake.DECLINED_AT_CHARGE)

    assert result["status"] == "failed"
    assert "declined" in result["message"] and "Try another card" in result["message"]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    failed = Payment.objects.get()
    assert failed.status == Payment.Status.FAILED
    assert failed.allocations.get().state == PaymentAllocation.State.RELEASED
    # The declined card is not kept on the patient's Stripe customer.
    assert not stripe_fake.client().v1.payment_methods.retrieve(failed.stripe_payment_method_id).customer
    page = client.get(result["redirect"]).content.decode()
    assert "didn't go through" in page and "Nothing was charged" in page and "Try another card" in page

    # "Try another card" opens the card page again, as a new attempt.
    retry = client.get(f"/pay/payments/{failed.pk}/retry/")
    fields = card_page(client, retry["Location"])
    assert fields["attempt-key"] != failed.attempt_key
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    assert confirm(client, fields)["status"] == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert [i.status for i in stripe_fake.intents_for(customer)].count("succeeded") == 1


def test_p5_three_d_secure_is_completed_then_confirmed_with_stripe(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    result = pay(client, "all", card=stripe_fake.THREE_D_SECURE)
    assert result["status"] == "requires_action" and result["client_secret"].startswith("pi_")
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PROCESSING

    # Nothing is marked paid until Stripe says succeeded: a refresh before authentication changes nothing.
    assert client.post(result["refresh"]).json()["status"] == "requires_action"
    stripe_fake.authenticate(str(payment.stripe_payment_intent_id), success=True)
    assert client.post(result["refresh"]).json()["status"] == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_p5_failed_authentication_releases_the_invoice(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    result = pay(client, "all", card=stripe_fake.THREE_D_SECURE)
    payment = Payment.objects.get()
    stripe_fake.authenticate(str(payment.stripe_payment_intent_id), success=False)

    refreshed = client.post(result["refresh"]).json()

    assert refreshed["status"] == "failed"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def test_double_click_on_pay_makes_one_payment_and_one_charge(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)

    first, second = confirm(client, fields), confirm(client, fields)

    assert first["status"] == second["status"] == "succeeded"
    assert first["redirect"] == second["redirect"]
    assert Payment.objects.count() == 1
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert len(stripe_fake.intents_for(customer)) == 1
    # Opening the card page again after paying goes to the result, not to a second charge.
    response = client.get(fields["url"])
    assert response.status_code == 302 and response["Location"] == first["redirect"]


def test_the_amount_comes_from_the_server_not_the_page(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)

    result = confirm(client, fields, amount=1, amount_cents=1, invoice_ids=[999])

    assert result["status"] == "succeeded"
    assert Payment.objects.get().amount_cents == 7_000


def test_a_reminder_link_used_after_payment_offers_nothing_to_pay(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    old_link = link_for(invoice)
    pay(verified_client(invoice), "all")

    later = Client()
    verify(later, old_link)
    assert "no unpaid invoices" in later.get("/pay/invoices/").content.decode()
    response = later.post("/pay/checkout/", {"choice": "all"})
    assert response["Location"] == "/pay/invoices/"
    assert Payment.objects.count() == 1


def test_a_card_page_left_open_while_another_tab_paid_does_not_charge_again(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    tab_one = verified_client(invoice)
    stale = card_page(tab_one, checkout(tab_one, "all"))
    pay(verified_client(invoice), "all")  # another tab (or device) pays first

    stripe_fake.save_card(stale["setup-id"], stripe_fake.GOOD_CARD)
    result = confirm(tab_one, stale)

    assert result["status"] == "failed" and "just paid" in result["message"]
    assert Payment.objects.filter(status=Payment.Status.SUCCEEDED).count() == 1
    customer = invoice.patient.__class__.objects.get(pk=invoice.patient_id).stripe_customer_id
    assert len(stripe_fake.intents_for(customer)) == 1


def test_a_patient_cannot_see_or_pay_another_patients_invoices_or_receipts(stripe_api, patient) -> None:
    (mine,) = open_invoices(patient, 7_000)
    other_patient = PatientFactory(phone="+16175550100")
    (theirs,) = open_invoices(other_patient, 9_999)
    other_client = Client()
    verify(other_client, link_for(theirs), phone="(617) 555-0100")
    pay(other_client, "all")
    their_payment = Payment.objects.get()

    client = verified_client(mine)
    assert client.post("/pay/checkout/", {"choice": f"invoice:{theirs.number}"})["Location"] == "/pay/invoices/"
    assert client.get(f"/pay/payments/{their_payment.pk}/").status_code == 404
    assert client.get(f"/pay/payments/{their_payment.pk}/receipt.pdf").status_code == 404
    assert client.post(f"/pay/payments/{their_payment.pk}/refresh/").status_code == 404
    assert "99.99" not in client.get("/pay/invoices/").content.decode()


def test_pay_pages_need_verification(stripe_api) -> None:
    client = Client()
    for url in ("/pay/invoices/", "/pay/invoices/details/", "/pay/card/0123456789abcdef/", "/pay/payments/1/"):
        assert client.get(url).status_code == 401
    assert client.post("/pay/checkout/", {"choice": "all"}).status_code == 401


def test_card_page_allows_stripe_js_and_nothing_else(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    response = client.get(checkout(client, "all"))
    policy = response["Content-Security-Policy"]
    assert f"script-src 'self' {stripe_api}" in policy
    assert "frame-ancestors 'none'" in policy
    page = response.content.decode()
    # pay.js loads Stripe.js from this URL (so a blocked load is noticed); the Pay button waits for it, disabled.
    assert f'data-stripe-js-url="{stripe_api}/js.stripe.com/v3/"' in page
    assert '<script src="/static/js/pay.js"></script>' in page
    assert "disabled>Pay $70.00</button>" in page


@pytest.mark.parametrize("body", [b"[]", b"1", b"not json", b'"x"'])
def test_odd_request_bodies_get_a_clear_answer_not_a_500(stripe_api, patient, body: bytes) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    card_page(client, checkout(client, "all"))
    for url in ("/pay/card/confirm/", "/pay/autopay/enroll/"):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code in (400, 409), (url, response.status_code)
        assert response.json()["message"]
    assert not Payment.objects.exists()


def test_a_card_that_was_not_saved_gets_a_fresh_setup_to_try_again(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))

    refused = confirm(client, {**fields, "setup-id": "seti_not_ours"})

    assert refused["http"] == 400 and refused["message"] == "We couldn't read that card. Please enter it again."
    assert refused["setup_id"] != fields["setup-id"]
    stripe_fake.save_card(refused["setup_id"], stripe_fake.GOOD_CARD)
    assert confirm(client, {**fields, "setup-id": refused["setup_id"]})["status"] == "succeeded"


def test_stripe_unreachable_after_the_card_check_never_claims_nothing_was_charged(
    stripe_api, patient, settings
) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    result = pay(client, "all", card=stripe_fake.THREE_D_SECURE)
    stripe_fake.authenticate(str(Payment.objects.get().stripe_payment_intent_id), success=True)
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"  # the card processor stops answering
    settings.STRIPE_TIMEOUT_SECONDS = 1

    answer = client.post(result["refresh"]).json()

    assert answer["status"] == "processing" and "message" not in answer
    page = client.get(answer["redirect"]).content.decode()
    assert "We&#x27;re confirming your payment" in page or "We're confirming your payment" in page
    assert "Nothing was charged" not in page


def test_two_tabs_of_one_browser_pay_two_different_invoices(stripe_api, patient) -> None:
    older, newer = open_invoices(patient, 4_000, 5_000)
    client = verified_client(newer)
    tab_one = card_page(client, checkout(client, f"invoice:{older.number}"))
    tab_two = card_page(client, checkout(client, f"invoice:{newer.number}"))  # opened before tab one pays
    assert "Pay $40.00" in tab_one["page"] and "Pay $50.00" in tab_two["page"]

    for fields in (tab_one, tab_two):
        stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
        assert confirm(client, fields)["status"] == "succeeded"

    assert sorted(Payment.objects.values_list("amount_cents", flat=True)) == [4_000, 5_000]
    assert set(Invoice.objects.values_list("status", flat=True)) == {Invoice.Status.PAID}


def test_the_tab_that_loses_a_race_says_why_and_shows_what_is_still_owed(stripe_api, patient) -> None:
    older, newer = open_invoices(patient, 4_000, 5_000)
    client = verified_client(newer)
    loser = card_page(client, checkout(client, "all"))
    winner = card_page(client, checkout(client, f"invoice:{newer.number}"))
    stripe_fake.save_card(winner["setup-id"], stripe_fake.GOOD_CARD)
    assert confirm(client, winner)["status"] == "succeeded"

    stripe_fake.save_card(loser["setup-id"], stripe_fake.GOOD_CARD)
    result = confirm(client, loser)

    assert result["http"] == 409 and result["redirect"] == "/pay/invoices/?notice=stale"
    summary = client.get(result["redirect"]).content.decode()
    assert "These invoices were just paid or are being paid. Here is what you still owe." in summary
    assert 'You owe <strong class="amount">$40.00</strong>' in summary
    assert Payment.objects.count() == 1


def test_a_lost_answer_to_pay_says_confirming_until_the_request_cannot_still_be_running(
    stripe_api, patient, time_machine
) -> None:
    import datetime

    time_machine.move_to(datetime.datetime.now(datetime.UTC), tick=True)
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))

    # The page lost the answer before any payment was held: nobody can say yet whether one will be.
    first = client.get(fields["attempt-url"])
    assert first.status_code == 202 and "We're confirming your payment" in first.content.decode()
    assert "Nothing was charged" not in first.content.decode()

    time_machine.shift(60)  # longer than any web request can run (gunicorn's timeout)
    later = client.get(fields["attempt-url"], follow=True)
    page = later.content.decode()
    assert "Nothing was charged" in page and "Pay $70.00" in page  # back on the card page, as a new attempt

    # When the Pay did get through, the attempt page leads to its result.
    again = card_page(client, later.redirect_chain[-1][0])
    stripe_fake.save_card(again["setup-id"], stripe_fake.GOOD_CARD)
    assert confirm(client, again)["status"] == "succeeded"
    assert "Payment received" in client.get(again["attempt-url"], follow=True).content.decode()


def test_an_unknown_or_expired_card_page_leads_back_to_the_invoices(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    response = client.get("/pay/card/ffffffffffffffff/", follow=True)
    assert "That payment page has expired" in response.content.decode()
    unknown = client.get("/pay/card/attempt/nothing-like-this/")
    assert unknown.status_code == 404
    page = unknown.content.decode()
    assert "tell yet whether this payment went through" in page and "Nothing was charged" not in page


def card_page_whose_session_lost_its_checkout(patient: Any) -> tuple[Client, dict[str, str]]:
    """A card page with its card saved, whose checkout another tab's request saved the session over."""
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    session = client.session
    session["checkouts"] = {}
    session.save()
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)
    return client, fields


def test_a_pay_click_does_not_depend_on_the_session_still_holding_its_checkout(stripe_api, patient) -> None:
    """Another tab's request saved the session over this tab's checkout: the page's signed checkout still pays."""
    client, fields = card_page_whose_session_lost_its_checkout(patient)

    assert confirm(client, fields, checkout=fields["checkout"])["status"] == "succeeded"


def test_a_pay_click_from_an_expired_page_says_nothing_was_charged_and_keeps_no_card(stripe_api, patient) -> None:
    from payments.models import CardToDetach

    client, fields = card_page_whose_session_lost_its_checkout(patient)

    result = confirm(client, fields, checkout="forged-or-old")

    assert result["http"] == 409 and "expired. Nothing was charged" in result["message"]
    assert not Payment.objects.exists()
    assert CardToDetach.objects.count() == 1  # the card Stripe.js saved is not kept
    assert "expired. Nothing was charged" in client.get(result["redirect"]).content.decode()
    # The sentence belongs to that redirect only: it never shows up on another page of the session (another
    # tab's "Payment received", say).
    assert "expired" not in client.get("/pay/invoices/").content.decode()


def test_a_json_body_with_a_lone_surrogate_is_refused_not_a_500(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    card_page(client, checkout(client, "all"))
    response = client.post("/pay/card/confirm/", b'{"attempt_key": "\\ud800"}', content_type="application/json")
    assert response.status_code == 409


def test_a_notice_in_the_summary_url_is_only_one_of_ours(stripe_api, patient) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    page = client.get("/pay/invoices/?notice=<script>alert(1)</script>").content.decode()
    assert "<script>alert(1)" not in page and "just paid" not in page


def test_every_patient_page_offers_alma_support_for_a_card_or_page_problem(stripe_api, patient, settings) -> None:
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    assert "Alma billing support" not in client.get("/pay/invoices/").content.decode()  # none configured: none shown
    settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE = "billing-help@alma.invalid", "(888) 555-0100"
    for url in ("/pay/invoices/", "/pay/invoices/details/", checkout(client, "all")):
        page = client.get(url).content.decode()
        assert 'href="mailto:billing-help@alma.invalid"' in page and 'href="tel:8885550100"' in page, url


def test_a_pay_click_with_too_little_time_left_holds_nothing_and_says_so(stripe_api, patient, settings) -> None:
    settings.OUTSIDE_CALL_BUDGET_SECONDS, settings.STRIPE_TIMEOUT_SECONDS = 5.0, 8.0  # less than one Stripe call
    (invoice,) = open_invoices(patient, 7_000)
    client = verified_client(invoice)
    fields = card_page(client, checkout(client, "all"))
    stripe_fake.save_card(fields["setup-id"], stripe_fake.GOOD_CARD)

    result = confirm(client, fields)

    assert result["http"] == 503 and "Nothing was charged" in result["message"]
    assert not Payment.objects.exists()
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN
