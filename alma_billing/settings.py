"""Settings, read from the environment (django-environ). Production fails fast when a secret is missing."""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from alma_billing.log_privacy import LOG_FORMATS, logging_config, sdk_console_logging_off

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be set (at least 32 characters) when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute base for links in emails, e.g. https://billing.example.com (no trailing slash). Required with DEBUG off
# (checked below).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "phonenumber_field",
    "django_celery_beat",
    "alma_billing.core",
    "invoices",
    "payments",
    "verification",
    "claims",
]

MIDDLEWARE = [
    # First: every request, even one refused below, gets an id in its logs and its X-Request-ID header (issue 15).
    "alma_billing.core.request_id.RequestIdMiddleware",
    "alma_billing.core.middleware.RejectNulBytesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "alma_billing.core.budget.OutsideCallBudgetMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the patient's choice (cookie), else a verified patient's preferred language, else the browser's.
    "django.middleware.locale.LocaleMiddleware",
    "alma_billing.core.language.PatientLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "alma_billing.urls"
WSGI_APPLICATION = "alma_billing.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "alma_billing.core.error_pages.support_contact",
            ],
        },
    },
]

if not env.str("DATABASE_URL", default=""):
    VAR_DIR.mkdir(exist_ok=True)  # the embedded SQLite default lives here; a fresh clone has no var/ yet
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Keep connections open: every page otherwise pays the connection setup (3-5x throughput, see DESIGN.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# Patient pages, emails, SMS and receipts come in these languages (docs/patients.md "Languages"); catalogs under
# locale/.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "alma_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_HTTPONLY = True
TIME_ZONE = env.str("TIME_ZONE", default="America/New_York")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

PHONENUMBER_DEFAULT_REGION = "US"

# --- Email and deliverability (issue 15; docs/email.md). ---
# EMAIL_PROVIDER=mailgun: django-anymail's Mailgun backend, and its signed tracking webhook at
# /email/mailgun/tracking/ (bounces and complaints mark the patient's address undeliverable). Otherwise SMTP via
# EMAIL_URL in production; files under var/outbox (listed at /dev/outbox/) in development. Tests use locmem.
OUTBOX_DIR = Path(env.str("OUTBOX_DIR", default=str(VAR_DIR / "outbox")))
EMAIL_PROVIDER = env.str("EMAIL_PROVIDER", default="").strip().lower()
ANYMAIL: dict[str, object] = {
    "MAILGUN_API_KEY": env.str("MAILGUN_API_KEY", default=""),
    "MAILGUN_SENDER_DOMAIN": env.str("MAILGUN_SENDER_DOMAIN", default="") or None,
    # Mailgun's EU region: https://api.eu.mailgun.net/v3
    "MAILGUN_API_URL": env.str("MAILGUN_API_URL", default="https://api.mailgun.net/v3"),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
    "REQUESTS_TIMEOUT": env.float("EMAIL_TIMEOUT", default=10),
}
# A signed event older than this is refused (Mailgun retries a failed delivery for about 8 hours); event ids seen
# before are refused whatever their age.
EMAIL_WEBHOOK_MAX_AGE_SECONDS = env.int("EMAIL_WEBHOOK_MAX_AGE_SECONDS", default=12 * 3600)
if EMAIL_PROVIDER not in ("", "mailgun"):
    raise ImproperlyConfigured("EMAIL_PROVIDER must be 'mailgun' or unset (SMTP via EMAIL_URL).")
if EMAIL_PROVIDER == "mailgun":
    if not (ANYMAIL["MAILGUN_API_KEY"] and ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"]):
        raise ImproperlyConfigured("EMAIL_PROVIDER=mailgun needs MAILGUN_API_KEY and MAILGUN_WEBHOOK_SIGNING_KEY.")
    INSTALLED_APPS.append("anymail")
    EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
elif env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    if not DEBUG and not env.bool("ALLOW_FILE_EMAIL", default=False):
        raise ImproperlyConfigured("EMAIL_URL must be set when DEBUG is off (e.g. smtp+tls://user:pass@host:587).")
    EMAIL_BACKEND = "alma_billing.core.mail.OutboxEmailBackend"
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Required with DEBUG off (checked below); the placeholder is for development only.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Alma Billing <billing@alma.invalid>")
# --- end of email and deliverability ---

# Celery on Redis; without REDIS_URL tasks run eagerly in-process (make run's embedded default). Required with DEBUG
# off (checked below) unless ALLOW_EAGER_TASKS=1.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="alma")
# Short socket timeouts: publishing to a Redis that is down or hung must fail fast (the sweeps finish the work).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_timeout": 2, "socket_connect_timeout": 2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# After a failed publish, a web process stops trying for this long (alma_billing/core/queue.py).
BROKER_BACKOFF_SECONDS = env.float("BROKER_BACKOFF_SECONDS", default=30.0)
ENQUEUE_RAISE_TASK_ERRORS = False  # the test settings turn it on
CELERY_TIMEZONE = TIME_ZONE
# Celery's Django fixup (5.7) closes every database connection after every task, whatever CONN_MAX_AGE says: each
# task then opens a new PostgreSQL connection (~5-8 ms of a ~30 ms issuance; bench/profile_worker.py). With this
# set the fixup only closes them every 1,000 tasks, and alma_billing/celery_app.py does per task what Django does
# per request (close_old_connections: CONN_MAX_AGE, broken or errored connections, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Periodic tasks live in the database (django-celery-beat) so ops can change them in the admin. `migrate` creates
# these defaults when they are missing and never overwrites an edited one (settings-defined beat entries would be
# reset at every beat start). Each: name -> (task, every N minutes | "HH:MM" daily).
PERIODIC_TASK_DEFAULTS: dict[str, tuple[str, int | str]] = {
    # Outbox sweep: bill sessions, announce invoices and send reminders that a lost task left undone.
    "invoices-sweep": ("invoices.tasks.invoices_sweep", 5),
    # P3: reminders until paid, evaluated daily.
    "reminders-daily": ("invoices.tasks.reminders_run_task", "10:00"),
    # Autopay charges (AutopayAttempt rows) whose time has come.
    "autopay-due": ("payments.tasks.autopay_due_task", 15),
    # Ask Stripe about payments still in flight, in case a webhook was lost; finish lost refunds and receipts.
    "payments-reconcile": ("payments.tasks.payments_reconcile", 10),
    # Housekeeping (issue 10): expired sessions and access attempts too old to count toward any limit.
    "housekeeping-daily": ("alma_billing.core.tasks.housekeeping_task", "03:30"),
}

# Reminders (P3): days after issue, then every REMINDER_REPEAT_DAYS while anything is open.
REMINDER_SCHEDULE_DAYS = [int(d) for d in env.list("REMINDER_SCHEDULE_DAYS", default=["3", "7", "14", "21", "30"])]
REMINDER_REPEAT_DAYS = env.int("REMINDER_REPEAT_DAYS", default=14)
REMINDER_CHUNK_SIZE = env.int("REMINDER_CHUNK_SIZE", default=1000)

# Autopay (P6, P7): notice before a charge (0 = at issuance), retries after a decline, benefit-card detection.
AUTOPAY_NOTICE_DAYS = env.int("AUTOPAY_NOTICE_DAYS", default=0)
AUTOPAY_RETRY_DAYS = [int(d) for d in env.list("AUTOPAY_RETRY_DAYS", default=["1", "3", "7"])]
# BIN (IIN) prefixes of FSA/HSA/HRA benefit cards, and words in issuer names of benefit administrators.
# Stripe rarely reports either, so ops keep these lists; the patient's own declaration and prepaid funding also count.
BENEFIT_CARD_BIN_PREFIXES = env.list("BENEFIT_CARD_BIN_PREFIXES", default=[])
BENEFIT_CARD_ISSUER_WORDS = env.list(
    "BENEFIT_CARD_ISSUER_WORDS",
    default=[
        "hsa",
        "fsa",
        "hra",
        "health savings",
        "flexible spending",
        "benefit",
        "wageworks",
        "healthequity",
        "optum bank",
        "further",
        "lively",
        "alegeus",
        "evolution1",
        "webster bank hsa",
    ],
)

# Billing policy knobs.
PAY_LINK_TTL = timedelta(days=env.int("PAY_LINK_TTL_DAYS", default=30))
# A completed session older than this without an outcome is picked up by the sweep.
ISSUE_SWEEP_GRACE = timedelta(minutes=env.int("ISSUE_SWEEP_GRACE_MINUTES", default=2))
# How long a reminder run keeps reconnecting to a database that went away (a restart, a dropped connection)
# before it stops and says it was interrupted.
REMINDER_DB_RETRY = timedelta(seconds=env.int("REMINDER_DB_RETRY_SECONDS", default=60))
REMINDER_MESSAGE_ID_DOMAIN = env.str("REMINDER_MESSAGE_ID_DOMAIN", default=SITE_URL.split("//")[-1].split(":")[0])

# SMS codes: Twilio Verify in production; the local backend (codes in the dev outbox) only with DEBUG.
VERIFY_BACKEND = env.str("VERIFY_BACKEND", default="local" if DEBUG else "twilio")
VERIFY_GATEWAY = {
    "twilio": "verification.gateways.twilio.TwilioVerifyGateway",
    "local": "verification.gateways.local.LocalVerifyGateway",
}.get(VERIFY_BACKEND, "")
if not VERIFY_GATEWAY:
    raise ImproperlyConfigured("VERIFY_BACKEND must be 'twilio' or 'local'.")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_VERIFY_SERVICE_SID = env.str("TWILIO_VERIFY_SERVICE_SID", default="")
if VERIFY_BACKEND == "twilio" and not (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN and TWILIO_VERIFY_SERVICE_SID):
    raise ImproperlyConfigured(
        "VERIFY_BACKEND=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_VERIFY_SERVICE_SID."
    )
if VERIFY_BACKEND == "local" and not DEBUG and not env.bool("ALLOW_LOCAL_VERIFY", default=False):
    raise ImproperlyConfigured("The local SMS backend shows codes to anyone; it cannot run with DEBUG off.")

# Patient access limits (P4). Counters are per patient (across all links and IPs) and per IP.
VERIFY_MAX_PHONE_TRIES = 5
VERIFY_MAX_CODE_CHECKS = 5
VERIFY_MAX_SENDS = 5  # per VERIFY_SEND_WINDOW
VERIFY_SEND_WINDOW = timedelta(minutes=10)
VERIFY_CODE_TTL = timedelta(minutes=10)
VERIFY_LOCKOUT = timedelta(minutes=env.int("VERIFY_LOCKOUT_MINUTES", default=30))
VERIFY_MAX_FAILURES_PER_IP = env.int("VERIFY_MAX_FAILURES_PER_IP", default=20)  # per hour, all patients
PATIENT_ACCESS_IDLE = timedelta(minutes=15)
PATIENT_ACCESS_MAX = timedelta(hours=2)
# Housekeeping (issue 10): access attempts older than this are deleted daily. Never below the longest window an
# attempt is counted in (lockout, per-IP hour, send window): housekeeping_task enforces that floor as well.
ACCESS_ATTEMPT_RETENTION = timedelta(days=env.int("ACCESS_ATTEMPT_RETENTION_DAYS", default=7))

# Stripe. Without keys and with DEBUG on, localstripe (make run starts it) stands in for Stripe and Stripe.js.
LOCALSTRIPE_URL = env.str("LOCALSTRIPE_URL", default="http://127.0.0.1:8420")
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
_use_localstripe = not STRIPE_SECRET_KEY
if _use_localstripe and not DEBUG and not env.bool("ALLOW_LOCALSTRIPE", default=False):
    raise ImproperlyConfigured("STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET must be set.")
if _use_localstripe:
    STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY = "sk_test_localstripe", "pk_test_localstripe"
    STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET or "whsec_localstripe_development"
elif not (STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET):
    raise ImproperlyConfigured("STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET must be set with STRIPE_SECRET_KEY.")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default=LOCALSTRIPE_URL if _use_localstripe else "https://api.stripe.com")
STRIPE_JS_URL = env.str(
    "STRIPE_JS_URL", default=f"{LOCALSTRIPE_URL}/js.stripe.com/v3/" if _use_localstripe else "https://js.stripe.com/v3/"
)
# --- Outside-call budget, chosen together with the web worker's timeout (bin/web; docs/operations.md "When things
# fail").
# A sync gunicorn worker is killed after GUNICORN_TIMEOUT seconds on one request; every request spends at most
# OUTSIDE_CALL_BUDGET_SECONDS on Stripe/Twilio/SMTP in all (alma_billing.core.budget), leaving the rest for the
# database and the page. One Stripe call waits at most STRIPE_TIMEOUT_SECONDS per try, retried while time is left.
GUNICORN_TIMEOUT = env.int("GUNICORN_TIMEOUT", default=30)
OUTSIDE_CALL_BUDGET_SECONDS = env.float("OUTSIDE_CALL_BUDGET_SECONDS", default=20.0)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=8.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=1)
TWILIO_TIMEOUT_SECONDS = env.float("TWILIO_TIMEOUT_SECONDS", default=16.0)  # both tries together
if OUTSIDE_CALL_BUDGET_SECONDS > GUNICORN_TIMEOUT - 5:
    raise ImproperlyConfigured(
        f"OUTSIDE_CALL_BUDGET_SECONDS ({OUTSIDE_CALL_BUDGET_SECONDS:g}) must be at least 5 s below GUNICORN_TIMEOUT "
        f"({GUNICORN_TIMEOUT}), or a slow card processor gets web workers killed mid-payment."
    )
# A payment in flight that Stripe has not answered about for this long is flagged to ops on the dashboard.
PAYMENT_STUCK_AFTER = timedelta(hours=env.int("PAYMENT_STUCK_AFTER_HOURS", default=24))
# A payment still in flight after this long is asked about by reconciliation (webhooks may have been lost).
PAYMENT_RECONCILE_AFTER = timedelta(minutes=env.int("PAYMENT_RECONCILE_AFTER_MINUTES", default=10))

# How many reverse proxies sit in front of gunicorn and append to X-Forwarded-For (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Staff access (admin): a second factor (django-otp), sessions of hours, login throttling (django-axes). ---
# Kept in one block: the apps, middleware and backends staff sign-in needs are added here, not spread over the file.
# Who a locked-out or unenrolled staff member should ask (shown on the login and lockout pages).
STAFF_HELP_CONTACT = env.str("STAFF_HELP_CONTACT", default="an Alma ops administrator")

# Second factor: the admin site is django-otp's OTPAdminSite (alma_billing/core/staff_login.py), so no admin page
# opens without a verified authenticator or recovery code. Ops enroll staff with `manage.py staff_otp_enroll USER`.
INSTALLED_APPS[INSTALLED_APPS.index("django.contrib.admin")] = "alma_billing.core.admin_apps.StaffAdminConfig"
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "django_otp.plugins.otp_static"]
# Right after authentication: it reads request.user and adds which device verified it.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "django_otp.middleware.OTPMiddleware",
)
# The name authenticator apps show next to the code.
OTP_TOTP_ISSUER = "Alma billing"

# Staff sessions last hours, not Django's two weeks. Patient access has its own, shorter limits
# (PATIENT_ACCESS_IDLE, PATIENT_ACCESS_MAX) checked on every patient page, well inside this.
SESSION_COOKIE_AGE = env.int("STAFF_SESSION_HOURS", default=8) * 3600

# Login throttling. Lock a username *from one client address* after N failures: guessing from one place stops,
# but nobody can lock every colleague out by typing wrong passwords for each name (a username-only lock would let
# them). Guessing spread over many addresses still meets the second factor, which throttles itself.
INSTALLED_APPS += ["axes"]
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last: turns a refused login into the lockout page
# Axes' backend refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env.int("STAFF_LOGIN_FAILURE_LIMIT", default=10)
# 0: locked until ops reset it (`manage.py axes_reset_username USERNAME`); otherwise the lock lifts after that long.
_staff_lockout_minutes = env.int("STAFF_LOCKOUT_MINUTES", default=0)
AXES_COOLOFF_TIME = timedelta(minutes=_staff_lockout_minutes) if _staff_lockout_minutes else None
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not extend it and are not counted again.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The same proxy-aware address the patient limits use (TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "alma_billing.core.staff_login.staff_client_ip"
AXES_LOCKOUT_CALLABLE = "alma_billing.core.staff_login.staff_lockout_response"
# Never store or log what was typed as a username, password or code (a password typed in the wrong box included).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]
# --- end of staff access ---

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form posts and CSRF refuses them.
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    LANGUAGE_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # --- HTTPS in production (issue 10): `check --deploy --fail-level WARNING` passes with these defaults ---------
    # Plain-http requests are redirected to https. The TLS proxy must set X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER);
    # SECURE_SSL_REDIRECT=0 only where the proxy itself already redirects http and nothing reaches gunicorn over
    # plain http (the deploy check then warns, security.W008). /healthz is exempt so load-balancer probes work.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # HSTS covers subdomains of this host and allows the preload list (a preload submission needs the apex domain
    # to send the header; a billing subdomain sending it commits nothing). Either can be turned off (=0).
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    # --- end: HTTPS in production ------------------------------------------------------------------------------

# --- Production fails fast: required variables (issue 10) ------------------------------------------------------
# With DEBUG off, startup stops with one message naming every missing variable, rather than sending emails with
# placeholder links or sender, or running every Celery task inside the web request for want of a broker.
# Checked after the other settings, so their own messages (SECRET_KEY, EMAIL_URL, Stripe, Twilio) come first.
# ALLOW_EAGER_TASKS=1 is the escape hatch for one-off commands without Redis (the image build's collectstatic, tests).
if not DEBUG:
    _required = {
        "REDIS_URL": "the Celery broker, e.g. redis://redis:6379/0",
        "SITE_URL": "the base of the links in emails, e.g. https://billing.example.com",
        "DEFAULT_FROM_EMAIL": "the sender, e.g. 'Alma Billing <billing@example.com>'",
    }
    if env.bool("ALLOW_EAGER_TASKS", default=False):
        del _required["REDIS_URL"]
    _missing = [name for name in _required if not env.str(name, default="").strip()]
    if _missing:
        raise ImproperlyConfigured(
            f"{', '.join(_missing)} must be set when DEBUG is off ("
            + "; ".join(f"{name}: {_required[name]}" for name in _missing)
            + "). See .env.example."
        )
# --- end: production required variables -----------------------------------------------------------------------

# --- Error pages (issue 10) ------------------------------------------------------------------------------------
# The platform's own contact, shown on the patient error pages (400/403/404/500, CSRF failure) when set.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="")
SUPPORT_PHONE = env.str("SUPPORT_PHONE", default="")
# A patient-styled "This page expired" page instead of Django's bare CSRF failure page.
CSRF_FAILURE_VIEW = "alma_billing.core.error_pages.csrf_failure"
# --- end: error pages -----------------------------------------------------------------------------------------

# --- Logs without patient data (issue 10) ---------------------------------------------------------------------
# Root at LOG_LEVEL; the Stripe and Twilio SDKs, urllib3, requests, Django's SQL logger and the like are pinned at
# WARNING whatever LOG_LEVEL says (at DEBUG/INFO they write emails, phone numbers, amounts and card details), and
# request paths are redacted (/pay/<token>/ -> /pay/[token]/, query strings dropped). See alma_billing/log_privacy.py.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
# LOG_FORMAT=json: one JSON object per line with the request id (web) or task id (Celery), issue 15.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured("LOG_FORMAT must be 'plain' or 'json'.")
LOGGING = logging_config(LOG_LEVEL, LOG_FORMAT)
sdk_console_logging_off()  # STRIPE_LOG=debug would print Stripe's request and response bodies to stderr
# --- end: logs ------------------------------------------------------------------------------------------------

# --- Error tracking (issue 15; docs/logs-and-errors.md) -------------------------------------------------------
# Off unless SENTRY_DSN is set. Django and Celery errors reach Sentry with no patient data: no request bodies,
# cookies, query strings, headers beyond a few safe ones, user details, local variables, or emails, phone numbers
# and amounts in messages (alma_billing/core/error_tracking.py scrubs every event before it leaves).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from alma_billing.core.error_tracking import sentry_init  # only when Sentry is on: it loads the SDK

    sentry_init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        release=env.str("SENTRY_RELEASE", default="") or None,
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )
# --- end: error tracking ---------------------------------------------------------------------------------------
