"""Staff access to the admin: lockout after failed logins, a second factor for everyone, short sessions, audit."""

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from alma_billing.core.models import AuditEvent
from tests.staff import staff_login

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN = "/admin/login/"


@pytest.fixture
def ops_user() -> Any:
    user = get_user_model().objects.create_user("ops-staff", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    return user


@pytest.fixture
def authenticator(ops_user: Any) -> TOTPDevice:
    return TOTPDevice.objects.create(user=ops_user, name="Authenticator app", confirmed=True)


@pytest.fixture
def recovery_code(ops_user: Any) -> str:
    device = StaticDevice.objects.create(user=ops_user, name="Recovery codes", confirmed=True)
    device.token_set.create(token="k7p2m4qz")
    return "k7p2m4qz"


def code_now(device: TOTPDevice) -> str:
    """The code the staff member's authenticator app shows right now."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def log_in(client: Client, username: str, password: str, token: str = "", otp_device: str = "", **meta: Any) -> Any:
    data = {"username": username, "password": password, "otp_token": token, "otp_device": otp_device, "next": "/admin/"}
    return client.post(LOGIN, data, **meta)


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_a_right_password_and_authenticator_code_sign_in(ops_user: Any, authenticator: TOTPDevice) -> None:
    client = Client()
    response = log_in(client, ops_user.username, PASSWORD, code_now(authenticator))
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert signed_in(client)
    assert client.get("/admin/dashboard/").status_code == 200


def test_a_right_password_without_a_code_does_not_sign_in(ops_user: Any, authenticator: TOTPDevice) -> None:
    client = Client()
    response = log_in(client, ops_user.username, PASSWORD)
    assert response.status_code == 200
    assert "Enter the 6-digit code from your authenticator app" in response.content.decode()
    assert not signed_in(client)
    assert not AuditEvent.objects.filter(action="staff.second_factor_failed").exists()  # just the first step


def test_a_wrong_code_does_not_sign_in(ops_user: Any, authenticator: TOTPDevice) -> None:
    client = Client()
    wrong = f"{(int(code_now(authenticator)) + 1) % 1_000_000:06d}"
    response = log_in(client, ops_user.username, PASSWORD, wrong, REMOTE_ADDR="192.0.2.8")
    assert response.status_code == 200 and "That code is not right" in response.content.decode()
    assert not signed_in(client)
    # A right password with a wrong code is worth a look: the password may be known to someone else.
    event = AuditEvent.objects.get(action="staff.second_factor_failed")
    assert (event.object_id, event.ip_address, event.data) == (
        str(ops_user.pk),
        "192.0.2.8",
        {"reason": "invalid_token"},
    )


def test_staff_without_a_device_cannot_sign_in_and_are_told_whom_to_ask(ops_user: Any) -> None:
    client = Client()
    response = log_in(client, ops_user.username, PASSWORD, "123456")
    assert response.status_code == 200
    assert "no second factor yet" in response.content.decode()
    assert not signed_in(client)


@pytest.mark.parametrize("page", ["/admin/", "/admin/dashboard/", "/admin/invoices/invoice/", "/admin/auth/user/"])
def test_a_session_without_a_second_factor_reaches_no_admin_page(ops_user: Any, page: str) -> None:
    client = Client()
    client.force_login(ops_user)  # what a password-only login would leave: authenticated, not verified
    response = client.get(page)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_a_recovery_code_works_once_and_only_once(ops_user: Any, recovery_code: str) -> None:
    client = Client()
    assert log_in(client, ops_user.username, PASSWORD, recovery_code.upper()).status_code == 302  # typed in capitals
    assert signed_in(client)
    client.post("/admin/logout/")
    assert not signed_in(client)

    again = log_in(client, ops_user.username, PASSWORD, recovery_code)
    assert again.status_code == 200
    assert not signed_in(client)
    assert not StaticToken.objects.filter(token=recovery_code).exists()


def test_removing_the_devices_ends_a_verified_session(ops_user: Any, authenticator: TOTPDevice) -> None:
    client = Client()
    log_in(client, ops_user.username, PASSWORD, code_now(authenticator))
    assert signed_in(client)
    call_command("staff_otp_reset", ops_user.username)
    assert not signed_in(client)
    assert AuditEvent.objects.filter(action="staff.otp_reset", object_id=str(ops_user.pk)).exists()


def test_enroll_prints_an_authenticator_uri_and_recovery_codes_that_sign_in(ops_user: Any, capsys: Any) -> None:
    call_command("staff_otp_enroll", ops_user.username)
    printed = capsys.readouterr().out
    assert "otpauth://totp/" in printed and "issuer=Alma%20billing" in printed
    codes = [line.strip() for line in printed.splitlines() if line.startswith("    ")]
    assert len(codes) == 10
    client = Client()
    assert log_in(client, ops_user.username, PASSWORD, codes[3]).status_code == 302
    device = TOTPDevice.objects.get(user=ops_user)
    client.post("/admin/logout/")
    assert log_in(client, ops_user.username, PASSWORD, code_now(device)).status_code == 302

    with pytest.raises(Exception, match="already has a second factor"):
        call_command("staff_otp_enroll", ops_user.username)
    event = AuditEvent.objects.get(action="staff.otp_enrolled")
    assert device.key not in json.dumps(event.data) and codes[0] not in json.dumps(event.data)


def test_seed_demo_logins_get_in_with_the_printed_codes(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    from invoices.management.commands.seed_demo import DEMO_RECOVERY_CODES, DEMO_TOTP_SECRET

    settings.DEBUG = True
    settings.EMAIL_BACKEND = "alma_billing.core.mail.OutboxEmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")
    client = Client()
    assert log_in(client, "ops", "ops-demo-password", DEMO_RECOVERY_CODES[0]).status_code == 302
    assert log_in(Client(), "dr.chen", "provider-demo-password", DEMO_RECOVERY_CODES[0]).status_code == 302
    assert log_in(Client(), "ops", "ops-demo-password", DEMO_RECOVERY_CODES[0]).status_code == 200  # used up

    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")  # idempotent: the same devices, the used code back
    assert StaticDevice.objects.filter(user__username="ops").count() == 1
    assert TOTPDevice.objects.filter(user__username="ops").count() == 1
    assert log_in(Client(), "ops", "ops-demo-password", DEMO_RECOVERY_CODES[0]).status_code == 302
    device = TOTPDevice.objects.get(user__username="dr.rivera")
    assert DEMO_TOTP_SECRET in device.config_url
    assert log_in(Client(), "dr.rivera", "provider-demo-password", code_now(device)).status_code == 302


def test_the_test_helper_signs_in_like_a_verified_login(ops_user: Any) -> None:
    assert staff_login(Client(), ops_user).get("/admin/").status_code == 200


hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=151, max_size=5000),
    st.sampled_from(["\x00", "ops-staff\x00", "' OR 1=1 --", "%00", "\u202eadmin", "ＯＰＳ", "١٢٣٤٥٦", "9" * 5000]),
)
device_ids = st.one_of(
    hostile_text,
    st.sampled_from(["auth.user/1", "otp_totp.totpdevice/abc", "otp_static.staticdevice/999999", "a/b/c", "x.y/1"]),
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    username=st.one_of(st.just("ops-staff"), hostile_text),
    password=st.one_of(st.just(PASSWORD), hostile_text),
    token=st.one_of(hostile_text, st.just("k7p2m4qz"), st.just("123456")),
    device=st.one_of(st.just(""), device_ids),
    repeat=st.booleans(),
)
def test_hostile_login_input_never_breaks_the_page(
    ops_user: Any, recovery_code: str, username: str, password: str, token: str, device: str, repeat: bool
) -> None:
    data: dict[str, Any] = {"username": username, "password": password, "otp_token": token, "otp_device": device}
    if repeat:
        data = {key: [value, "ops-staff", value] for key, value in data.items()}
    response = Client().post(LOGIN, data)
    assert response.status_code < 500


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b'{"username": ["ops-staff"], "password": {"$ne": 1}}', "application/json"),
        (b"username=ops-staff&password=%00&otp_token[]=1", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"x" * 3_000_000, "application/x-www-form-urlencoded"),
        (
            b"--b\r\nContent-Disposition: form-data; name=username; filename=a\r\n\r\nops\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
    ],
)
def test_wrong_types_and_oversized_bodies_never_break_the_page(ops_user: Any, body: bytes, content_type: str) -> None:
    response = Client().generic("POST", LOGIN, body, content_type=content_type)
    assert response.status_code < 500


def test_a_device_field_naming_another_model_is_refused_not_an_error(ops_user: Any, recovery_code: str) -> None:
    # django-otp's own admin form answers 500 here (it loads any model the field names); ours only knows the
    # user's own devices.
    response = log_in(Client(), ops_user.username, PASSWORD, recovery_code, otp_device="auth.user/1")
    assert response.status_code == 200


def test_staff_sessions_last_hours_not_weeks(ops_user: Any, authenticator: TOTPDevice, settings: Any) -> None:
    client = Client()
    log_in(client, ops_user.username, PASSWORD, code_now(authenticator))
    assert client.session.get_expiry_age() == 8 * 3600 == settings.SESSION_COOKIE_AGE
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == 8 * 3600


def test_thirty_wrong_passwords_lock_the_account_until_ops_reset_it(ops_user: Any, authenticator: TOTPDevice) -> None:
    client = Client()
    answers = [log_in(client, ops_user.username, f"guess-{n}").status_code for n in range(30)]
    assert 429 in answers and set(answers) <= {200, 429}

    locked = log_in(client, ops_user.username, PASSWORD, code_now(authenticator))
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Sign-in locked" in page and "an Alma ops administrator" in page and "failed sign-in attempts" in page
    assert not signed_in(client)
    # One lockout event however many attempts follow it.
    assert AuditEvent.objects.filter(action="staff.locked_out", object_id=str(ops_user.pk)).count() == 1

    call_command("axes_reset_username", ops_user.username)
    response = log_in(client, ops_user.username, PASSWORD, code_now(authenticator))
    assert response.status_code == 302
    assert signed_in(client)


def test_a_lockout_holds_one_address_and_leaves_the_others(ops_user: Any, recovery_code: str, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = {"HTTP_X_FORWARDED_FOR": "203.0.113.66"}
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), ops_user.username, f"guess-{n}", **attacker)
    assert log_in(Client(), ops_user.username, PASSWORD, recovery_code, **attacker).status_code == 429

    colleague = Client()
    assert (
        log_in(colleague, ops_user.username, PASSWORD, recovery_code, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code
        == 302
    )
    event = AuditEvent.objects.get(action="staff.locked_out")
    assert event.ip_address == "203.0.113.66"


def test_a_username_longer_than_any_account_is_a_form_error(ops_user: Any) -> None:
    # Found by the property test above: 256 characters reached axes' attempt row (varchar 255) and answered 500.
    response = log_in(Client(), "0" * 256, PASSWORD, "k7p2m4qz")
    assert response.status_code == 200 and "at most 150 characters" in response.content.decode()


def test_login_logout_and_failures_are_audited_with_the_forwarded_address(
    ops_user: Any, authenticator: TOTPDevice, settings: Any
) -> None:
    from axes.models import AccessAttempt

    settings.TRUSTED_PROXY_COUNT = 1
    # The client claims an address; the one proxy we trust appends the real one, which is what counts.
    via_proxy: dict[str, Any] = {"HTTP_X_FORWARDED_FOR": "10.9.9.9, 198.51.100.23", "REMOTE_ADDR": "10.0.0.2"}
    client = Client()
    log_in(client, ops_user.username, "not-the-password", **via_proxy)
    log_in(client, "nobody-by-this-name", "also-not", **via_proxy)
    log_in(client, ops_user.username, PASSWORD, code_now(authenticator), **via_proxy)
    client.post("/admin/logout/", **via_proxy)

    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="staff.")}
    assert set(events) == {"staff.login_failed", "staff.login", "staff.logout"}
    assert {e.ip_address for e in events.values()} == {"198.51.100.23"}
    assert events["staff.login"].actor == ops_user and events["staff.login"].data["second_factor"] == "TOTPDevice"
    assert events["staff.logout"].actor == ops_user
    failures = AuditEvent.objects.filter(action="staff.login_failed")
    assert sorted(e.object_id for e in failures) == sorted([str(ops_user.pk), "unknown"])
    stored = json.dumps([e.data for e in AuditEvent.objects.all()]) + "".join(
        a.post_data for a in AccessAttempt.objects.all()
    )
    for secret in ("not-the-password", "also-not", PASSWORD, "nobody-by-this-name"):
        assert secret not in stored


def test_a_malformed_forwarded_address_falls_back_to_the_peer(ops_user: Any, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    response = log_in(
        Client(), ops_user.username, "wrong", HTTP_X_FORWARDED_FOR="not-an-ip\x01", REMOTE_ADDR="10.0.0.2"
    )
    assert response.status_code == 200
    assert AuditEvent.objects.get(action="staff.login_failed").ip_address == "10.0.0.2"


def test_staff_actions_are_audited_with_the_forwarded_address(ops_user: Any, settings: Any) -> None:
    from tests.factories import InvoiceFactory

    settings.TRUSTED_PROXY_COUNT = 1
    invoice = InvoiceFactory()
    client = staff_login(Client(), ops_user)
    client.post(
        "/admin/invoices/invoice/",
        {"action": "void_invoices", "_selected_action": [invoice.pk], "post": "yes", "reason": "Entered twice"},
        HTTP_X_FORWARDED_FOR="198.51.100.44",
    )
    event = AuditEvent.objects.filter(actor=ops_user, object_id=str(invoice.pk)).exclude(action__startswith="staff.")
    assert [e.ip_address for e in event] == ["198.51.100.44"]
