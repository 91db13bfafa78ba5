"""Test settings: the real settings with safe defaults for a laptop or CI (PostgreSQL when DATABASE_URL is set)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-that-is-long-enough-0123456789")
os.environ.setdefault("ALLOW_FILE_EMAIL", "1")
os.environ.setdefault("VERIFY_BACKEND", "local")
os.environ.setdefault("ALLOW_LOCAL_VERIFY", "1")
os.environ.setdefault("ALLOW_LOCALSTRIPE", "1")
os.environ.setdefault("LOCALSTRIPE_URL", "http://127.0.0.1:8421")  # the tests start their own
# Production requires these with DEBUG off; tests run with DEBUG off and, on a laptop, without Redis.
os.environ.setdefault("ALLOW_EAGER_TASKS", "1")
os.environ.setdefault("SITE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("DEFAULT_FROM_EMAIL", "Alma Billing <billing@alma.invalid>")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1")

from alma_billing.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
LANGUAGE_COOKIE_SECURE = False
SECURE_SSL_REDIRECT = False
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# A task that fails when run in-process fails the test that ran it (production only logs it; the sweeps retry).
ENQUEUE_RAISE_TASK_ERRORS = True
