"""No input answers 5xx: every patient page and the staff admin's lists, filters, search and autocomplete under
hypothesis-generated input (huge strings, unicode, NUL bytes, wrong types, missing and repeated fields, odd
X-Forwarded-For headers behind a trusted proxy). One property per endpoint; the Django test client runs in-process
and re-raises any server error, so a 500 fails the example that caused it.
"""

import ipaddress
import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alma_billing.core.models import AuditEvent
from invoices.models import Invoice
from payments.models import Payment, PaymentAllocation
from tests.factories import InvoiceFactory, PatientFactory, PaymentAllocationFactory, PaymentFactory
from tests.staff import signed_in
from tests.verification.helpers import link_for, verify
from verification.models import AccessAttempt

pytestmark = pytest.mark.django_db

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ODD = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "%00",
        "'; DROP TABLE invoices_invoice; --",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "\u202e\u0301\ufeff",
        "𝟘𝟙𝟚 ٣٤٥ ²",
        "+1 (202) 555-0143\x00",
        "(202) 555-0143",
        "123456",
        "invoice:INV-0000001",
        "all",
        "recent",
        "9" * 5_000,
        "é" * 20_000,
        "A" * 100_000,
        "-1",
        "99999999999999999999999",
        " ",
        "\r\n",
        "null",
    ]
)
TEXT = st.one_of(st.text(max_size=40), ODD)
VALUE = st.one_of(TEXT, st.integers().map(str), st.lists(TEXT, min_size=2, max_size=3))  # a list repeats a field
XFF = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.ip_addresses().map(str),
    st.sampled_from(["1.2.3.4:5678", "[::1]:80", "unknown", "garbage", "\x00", "1.2.3.4, unknown", "x" * 10_000]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
BODY = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={"attempt_key": JSON, "setup_intent": JSON, "benefit_card": JSON, "pay_open_now": JSON},
    ).map(json.dumps),
    JSON.map(json.dumps),
    st.binary(max_size=200),
    st.sampled_from(["[" * 5_000, '{"a":' * 3_000, "", '{"attempt_key": "\\u0000"}', "\x00"]),
)
ID = st.one_of(st.integers(min_value=0, max_value=10**30).map(str), TEXT)


def form(*fields: str) -> st.SearchStrategy[dict[str, Any]]:
    """Form data with the page's own fields (each may be missing, repeated or hostile) and others."""
    return st.dictionaries(st.one_of(st.sampled_from(fields), TEXT), VALUE, max_size=4)


def send(client: Client, method: str, url: str, xff: str | None = None, **kwargs: Any) -> Any:
    extra = {"HTTP_X_FORWARDED_FOR": xff} if xff is not None else {}
    response = getattr(client, method.lower())(url, REMOTE_ADDR="198.51.100.7", **extra, **kwargs)
    assert response.status_code < 500, (method, url, response.status_code)
    return response


def assert_stored_addresses_are_ips() -> None:
    for value in [
        *AccessAttempt.objects.values_list("ip_address", flat=True),
        *AuditEvent.objects.values_list("ip_address", flat=True),
    ]:
        assert value is None or ipaddress.ip_address(value)


@pytest.fixture(autouse=True)
def _behind_a_proxy(settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1


@pytest.fixture
def invoice() -> Invoice:
    return InvoiceFactory(session__patient=PatientFactory(phone="+12025550143"))


@pytest.fixture
def verified(invoice: Invoice) -> Client:
    client = Client()
    verify(client, link_for(invoice))
    return client


@pytest.fixture
def paid(invoice: Invoice) -> Payment:
    payment = PaymentFactory(
        patient=invoice.patient, amount_cents=invoice.amount_cents, attempt_key="paid", status=Payment.Status.SUCCEEDED
    )
    PaymentAllocationFactory(payment=payment, invoice=invoice, state=PaymentAllocation.State.SETTLED)
    return payment


# Patient pages before verification.


@PROPERTY
@given(token=TEXT, method=st.sampled_from(["GET", "POST"]), data=form("phone"), xff=XFF)
def test_pay_link_landing_with_any_token(token: str, method: str, data: dict[str, Any], xff: str | None) -> None:
    send(Client(), method, f"/pay/{quote(token, safe='')}/", xff, data=data)


@PROPERTY
@given(data=form("phone"), xff=XFF, method=st.sampled_from(["GET", "POST"]))
def test_phone_step(invoice: Invoice, data: dict[str, Any], xff: str | None, method: str) -> None:
    AccessAttempt.objects.all().delete()  # every example reaches the check, not the lockout
    send(Client(), method, link_for(invoice), xff, data=data)
    assert_stored_addresses_are_ips()


@PROPERTY
@given(phone=VALUE, xff=XFF)
def test_phone_step_with_the_right_number_and_any_forwarded_for(invoice: Invoice, phone: Any, xff: str | None) -> None:
    AccessAttempt.objects.all().delete()
    send(Client(), "POST", link_for(invoice), xff, data={"phone": ["(202) 555-0143", phone]})
    send(Client(), "POST", link_for(invoice), xff, data={"phone": "(202) 555-0143"})
    assert_stored_addresses_are_ips()


@pytest.fixture
def pending(invoice: Invoice) -> Client:
    client = Client()
    assert send(client, "POST", link_for(invoice), data={"phone": "(202) 555-0143"}).status_code == 302
    return client


@PROPERTY
@given(data=form("code"), xff=XFF, method=st.sampled_from(["GET", "POST"]))
def test_code_step(pending: Client, data: dict[str, Any], xff: str | None, method: str) -> None:
    AccessAttempt.objects.filter(kind=AccessAttempt.Kind.CODE).delete()
    send(pending, method, "/pay/code/", xff, data=data)
    send(Client(), method, "/pay/code/", xff, data=data)  # no pending code at all
    assert_stored_addresses_are_ips()


@PROPERTY
@given(data=form("code"), xff=XFF)
def test_code_resend(pending: Client, data: dict[str, Any], xff: str | None) -> None:
    AccessAttempt.objects.all().delete()
    send(pending, "POST", "/pay/code/resend/", xff, data=data)
    assert_stored_addresses_are_ips()


# Verified patient pages.


@PROPERTY
@given(query=form("page", "lang", "resent"), xff=XFF)
def test_summary(verified: Client, query: dict[str, Any], xff: str | None) -> None:
    send(verified, "GET", "/pay/invoices/", xff, data=query)


@PROPERTY
@given(query=form("page"), xff=XFF)
def test_details(verified: Client, query: dict[str, Any], xff: str | None) -> None:
    send(verified, "GET", "/pay/invoices/details/", xff, data=query)


@PROPERTY
@given(number=TEXT, xff=XFF)
def test_invoice_detail(verified: Client, number: str, xff: str | None) -> None:
    send(verified, "GET", f"/pay/invoices/{quote(number, safe='')}/", xff)


@PROPERTY
@given(data=form("choice"), xff=XFF)
def test_checkout(verified: Client, data: dict[str, Any], xff: str | None) -> None:
    send(verified, "POST", "/pay/checkout/", xff, data=data)


@PROPERTY
@given(query=form("attempt_key"), xff=XFF, checkout=TEXT)
def test_card_page(stripe_api: str, verified: Client, query: dict[str, Any], xff: str | None, checkout: str) -> None:
    card_page = send(verified, "POST", "/pay/checkout/", data={"choice": "all"})["Location"]  # wherever it lives
    send(verified, "GET", card_page, xff, data=query)
    send(verified, "GET", f"/pay/card/{quote(checkout, safe='')}/", xff, data=query)  # someone else's, or garbage


@PROPERTY
@given(body=BODY, xff=XFF)
def test_card_confirm(stripe_api: str, verified: Client, body: Any, xff: str | None) -> None:
    send(verified, "POST", "/pay/checkout/", data={"choice": "all"})
    send(verified, "POST", "/pay/card/confirm/", xff, data=body, content_type="application/json")
    send(verified, "POST", "/pay/card/confirm/", xff, data=body, content_type="text/plain")


@PROPERTY
@given(attempt=TEXT, xff=XFF)
def test_attempt_page(stripe_api: str, verified: Client, attempt: str, xff: str | None) -> None:
    card_page = send(verified, "POST", "/pay/checkout/", data={"choice": "all"})["Location"]
    real = re.search(r'data-attempt-url="([^"]+)"', send(verified, "GET", card_page).content.decode())
    assert real
    send(verified, "GET", real.group(1), xff)
    send(verified, "GET", f"/pay/card/attempt/{quote(attempt, safe='')}/", xff)


@PROPERTY
@given(payment_id=ID, xff=XFF)
def test_retry(stripe_api: str, verified: Client, paid: Payment, payment_id: str, xff: str | None) -> None:
    for pk in (quote(payment_id, safe=""), paid.pk):
        send(verified, "GET", f"/pay/payments/{pk}/retry/", xff)


@PROPERTY
@given(checkouts=JSON, body=BODY)
def test_pages_with_a_checkout_store_of_another_shape(
    stripe_api: str, verified: Client, checkouts: Any, body: Any
) -> None:
    session = verified.session
    session["checkouts"] = checkouts  # an older deployment's shape, or anything at all
    session.save()
    send(verified, "GET", "/pay/card/0123456789abcdef/")
    send(verified, "GET", "/pay/card/attempt/0123456789abcdef/")
    send(verified, "POST", "/pay/card/confirm/", data=body, content_type="application/json")
    send(verified, "POST", "/pay/checkout/", data={"choice": "all"})


@PROPERTY
@given(payment_id=ID, body=BODY, xff=XFF)
def test_refresh(stripe_api: str, verified: Client, paid: Payment, payment_id: str, body: Any, xff: str | None) -> None:
    for pk in (quote(payment_id, safe=""), paid.pk):
        send(verified, "POST", f"/pay/payments/{pk}/refresh/", xff, data=body, content_type="application/json")


@PROPERTY
@given(payment_id=ID, query=form("x"), xff=XFF)
def test_result(stripe_api: str, verified: Client, paid: Payment, payment_id: str, query: Any, xff: str | None) -> None:
    for pk in (quote(payment_id, safe=""), paid.pk):
        send(verified, "GET", f"/pay/payments/{pk}/", xff, data=query)


@PROPERTY
@given(payment_id=ID, xff=XFF)
def test_receipt(verified: Client, paid: Payment, payment_id: str, xff: str | None) -> None:
    send(verified, "GET", f"/pay/payments/{quote(payment_id, safe='')}/receipt.pdf", xff)


@PROPERTY
@given(query=form("x"), xff=XFF)
def test_autopay_page(stripe_api: str, verified: Client, query: dict[str, Any], xff: str | None) -> None:
    send(verified, "GET", "/pay/autopay/", xff, data=query)


@PROPERTY
@given(body=BODY, xff=XFF)
def test_autopay_enroll(stripe_api: str, verified: Client, body: Any, xff: str | None) -> None:
    send(verified, "POST", "/pay/autopay/enroll/", xff, data=body, content_type="application/json")


@PROPERTY
@given(data=form("x"), xff=XFF)
def test_autopay_end(verified: Client, data: dict[str, Any], xff: str | None) -> None:
    send(verified, "POST", "/pay/autopay/end/", xff, data=data)
    assert_stored_addresses_are_ips()


@PROPERTY
@given(data=form("x"), xff=XFF, method=st.sampled_from(["GET", "POST"]))
def test_sign_out(data: dict[str, Any], xff: str | None, method: str) -> None:
    send(Client(), method, "/pay/sign-out/", xff, data=data)


@PROPERTY
@example(cookies={"sessionid": "abc\x00defghijkl"}, url="/pay/invoices/", method="GET")
@given(
    cookies=st.dictionaries(st.sampled_from(["sessionid", "csrftoken", "django_language", "x"]), TEXT, max_size=3),
    url=st.sampled_from(["/pay/invoices/", "/pay/code/", "/pay/card/", "/admin/", "/admin/invoices/invoice/"]),
    method=st.sampled_from(["GET", "POST"]),
)
def test_any_cookie(verified: Client, cookies: dict[str, str], url: str, method: str) -> None:
    # As a WSGI server passes it: the header's bytes, read as latin-1.
    header = "; ".join(f"{name}={value}" for name, value in cookies.items()).encode().decode("latin-1")
    own = "; ".join(f"{name}={morsel.coded_value}" for name, morsel in verified.cookies.items())
    send(Client(), method, url, HTTP_COOKIE=header, data={"code": "123456"})
    send(verified, method, url, HTTP_COOKIE=f"{own}; {header}")


@PROPERTY
@given(path=TEXT)
def test_any_patient_path(path: str) -> None:
    send(Client(), "GET", f"/pay/{quote(path, safe='/')}")


# Staff admin: lists with filters, search and ordering; autocomplete.

ADMIN_LISTS = [
    "invoices/patient",
    "invoices/invoice",
    "invoices/therapysession",
    "invoices/reminderlog",
    "invoices/eligibilitysnapshot",
    "invoices/eapauthorization",
    "invoices/provider",
    "invoices/practice",
    "invoices/reminderrun",
    "payments/payment",
    "payments/autopayenrollment",
    "payments/autopayattempt",
    "payments/stripeevent",
    "core/auditevent",
]
FILTER_PARAMS = [
    "q",
    "o",
    "p",
    "e",
    "_facets",
    "all",
    "status__exact",
    "age",
    "discrepancy",
    "disputed_at__isempty",
    "practice__id__exact",
    "provider__id__exact",
    "kind__exact",
    "billing_outcome__exact",
    "billing_type__exact",
    "practice",
    "last_outcome",
    "ended_at__isempty",
    "invoice__practice__id__exact",
    "sent_on__gte",
    "sent_on__lt",
    "source__exact",
    "plan_active__exact",
    "program__exact",
    "action__exact",
    "object_type__exact",
    "type__exact",
    "autopay_policy__exact",
    "dry_run__exact",
    "patient__invoices__number",
]


def _staff(kind: str, provider: Any) -> Client:
    if kind == "ops":
        user = get_user_model().objects.create_user("ops-fuzz", password="x", is_staff=True)
        user.groups.add(Group.objects.get(name="Ops"))
    else:
        user = provider.user
        user.groups.add(Group.objects.get(name="Providers"))
    return signed_in(user)


@pytest.fixture(params=["ops", "provider"])
def staff(request: Any, invoice: Invoice) -> Client:
    return _staff(request.param, invoice.provider)


@pytest.mark.parametrize("model", ADMIN_LISTS)
@PROPERTY
@given(query=st.dictionaries(st.one_of(st.sampled_from(FILTER_PARAMS), TEXT), VALUE, max_size=4))
def test_admin_list_filters_search_and_ordering(staff: Client, model: str, query: dict[str, Any]) -> None:
    send(staff, "GET", f"/admin/{model}/", data=query)


@PROPERTY
@given(object_id=TEXT, model=st.sampled_from(ADMIN_LISTS), page=st.sampled_from(["change", "history"]))
def test_admin_object_pages_with_any_id(staff: Client, object_id: str, model: str, page: str) -> None:
    send(staff, "GET", f"/admin/{model}/{quote(object_id, safe='')}/{page}/")


@PROPERTY
@given(
    query=st.fixed_dictionaries(
        {},
        optional={
            "term": VALUE,
            "app_label": st.one_of(st.sampled_from(["invoices", "payments", "core", "auth"]), TEXT),
            "model_name": st.one_of(st.sampled_from(["patient", "therapysession", "invoice", "payment"]), TEXT),
            "field_name": st.one_of(st.sampled_from(["patient", "provider", "invoice", "session"]), TEXT),
            "page": VALUE,
        },
    )
)
def test_admin_autocomplete(staff: Client, query: dict[str, Any]) -> None:
    send(staff, "GET", "/admin/autocomplete/", data=query)


@PROPERTY
@given(query=form("x"))
def test_ops_dashboard(staff: Client, query: dict[str, Any]) -> None:
    send(staff, "GET", "/admin/dashboard/", data=query)


def test_nul_in_a_path_query_form_field_or_cookie_is_a_400(verified: Client, invoice: Invoice) -> None:
    assert send(Client(), "GET", "/pay/abc%00def/").status_code == 400
    assert send(verified, "GET", "/pay/invoices/", data={"x": "\x00"}).status_code == 400
    assert send(Client(), "POST", link_for(invoice), data={"phone\x00": "1"}).status_code == 400
    assert send(Client(), "POST", link_for(invoice), data={"phone": "(202) 555-0143\x00"}).status_code == 400
    assert send(verified, "GET", f"/pay/invoices/{invoice.number}%00/").status_code == 400
    assert send(Client(), "GET", "/pay/invoices/", HTTP_COOKIE="sessionid=abc\x00defghijkl").status_code == 400


def test_an_x_forwarded_for_with_a_port_stores_the_address_without_it(invoice: Invoice) -> None:
    send(Client(), "POST", link_for(invoice), "203.0.113.5:5678", data={"phone": "(617) 555-0100"})
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.5"]
