# Alma billing: one image for web (gunicorn), worker (celery), beat (celery beat) and the migrate job.
#   docker build -t alma-billing .
# The default command serves the site; docker-compose.yml picks bin/worker, bin/beat or bin/migrate per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=alma_billing.settings \
    PATH=/app/bin:$PATH

# An unprivileged user with a real home (some libraries cache under ~), no login shell, no password.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, so editing the code does not reinstall them. requirements.txt is the hashed lock
# (`make lock`): pip refuses any file whose hash differs. All pins have manylinux wheels (psycopg2-binary,
# etc.), so wheels only: nothing is built, and no compiler or libpq-dev is needed.
COPY requirements.txt ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.txt

COPY . .

# Static files are collected (and compressed/hashed by whitenoise) at build time, with DEBUG off as in production.
# Settings fail fast without a SECRET_KEY, EMAIL_URL, REDIS_URL, SITE_URL, DEFAULT_FROM_EMAIL, Twilio and Stripe keys,
# so the build passes throwaway values for this one command only; they are not baked into the image's environment
# and no real secret is needed to build.
RUN DEBUG=0 \
    SECRET_KEY=build-only-collectstatic-not-a-secret-0123456789abcdef \
    ALLOW_FILE_EMAIL=1 VERIFY_BACKEND=local ALLOW_LOCAL_VERIFY=1 ALLOW_LOCALSTRIPE=1 \
    ALLOW_EAGER_TASKS=1 SITE_URL=https://build.invalid DEFAULT_FROM_EMAIL=build@build.invalid \
    python manage.py collectstatic --noinput \
    && apt-get update -qq && apt-get install -y -qq --no-install-recommends gettext >/dev/null \
    && python manage.py compilemessages -v0 \
    && apt-get purge -y -qq gettext >/dev/null && apt-get autoremove -y -qq >/dev/null && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /app/var/outbox \
    && chown -R app:app /app/var \
    && chmod 755 /app/bin/*

# The code stays owned by root and read-only for the app user; only /app/var (SQLite fallback, file outbox)
# is writable. In compose the outbox is a shared volume so web's /dev/outbox/ can list what the worker sent.
USER app

EXPOSE 8000
CMD ["/app/bin/web"]
