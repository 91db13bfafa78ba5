"""Production settings (DEBUG off) fail fast with a message naming what is missing, and with every documented
production variable set, Django's deploy check passes with no warning at all. Each case is a fresh process with a
clean environment: the production settings module, none of the test settings' escape hatches."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What .env.example documents as required in production (DATABASE_URL and REDIS_URL come from compose there).
PRODUCTION_ENV = {
    "SECRET_KEY": "prod-like-secret-key-for-the-test-only-0123456789abcdefghijklmnop",
    "ALLOWED_HOSTS": "billing.example.com",
    "SITE_URL": "https://billing.example.com",
    "DATABASE_URL": "postgres://alma:password@127.0.0.1:5432/alma",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_URL": "smtp+tls://user:pass@smtp.example.com:587",
    "DEFAULT_FROM_EMAIL": "Alma Billing <billing@example.com>",
    "STRIPE_SECRET_KEY": "sk_test_not_a_real_key",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_not_a_real_key",
    "STRIPE_WEBHOOK_SECRET": "whsec_not_a_real_secret",
    "TWILIO_ACCOUNT_SID": "test-account-not-real",
    "TWILIO_AUTH_TOKEN": "not-a-real-token",
    "TWILIO_VERIFY_SERVICE_SID": "test-service-not-real",
    "TRUSTED_PROXY_COUNT": "1",
}


def manage(*args: str, **overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env["DJANGO_SETTINGS_MODULE"] = "alma_billing.settings"
    env.update(PRODUCTION_ENV)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_deploy_check_passes_with_no_warning_in_production() -> None:
    done = manage("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "System check identified no issues (0 silenced)." in done.stdout
    assert "WARNING" not in done.stderr + done.stdout


def test_production_redirects_to_https_and_sends_strict_hsts() -> None:
    done = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.CELERY_TASK_ALWAYS_EAGER)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["True", "31536000", "True", "True", "True", "True", "False"]


def test_ssl_redirect_can_be_left_to_the_proxy_and_the_deploy_check_says_so() -> None:
    done = manage("check", "--deploy", "--fail-level", "WARNING", SECURE_SSL_REDIRECT="0")
    assert done.returncode != 0 and "security.W008" in done.stderr + done.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "REDIS_URL",
        "SITE_URL",
        "DEFAULT_FROM_EMAIL",
        "EMAIL_URL",
        "STRIPE_SECRET_KEY",
        "TWILIO_AUTH_TOKEN",
    ],
)
def test_startup_stops_naming_the_missing_variable(missing: str) -> None:
    done = manage("check", **{missing: None})
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and missing in done.stderr.splitlines()[-1], done.stderr


def test_several_missing_variables_are_named_at_once() -> None:
    done = manage("check", REDIS_URL=None, SITE_URL=None, DEFAULT_FROM_EMAIL=None)
    last = done.stderr.splitlines()[-1]
    assert done.returncode != 0 and "REDIS_URL, SITE_URL, DEFAULT_FROM_EMAIL must be set when DEBUG is off" in last


def test_an_empty_value_counts_as_missing() -> None:
    done = manage("check", SITE_URL="  ")
    assert done.returncode != 0 and "SITE_URL must be set" in done.stderr


def test_without_redis_tasks_would_run_in_the_request_so_production_refuses_unless_told() -> None:
    assert manage("check", REDIS_URL=None).returncode != 0
    done = manage("check", REDIS_URL=None, ALLOW_EAGER_TASKS="1")
    assert done.returncode == 0, done.stderr
