"""Settings for bench/pay_page.py's gunicorn: the production settings, plus the bench URLconf and a temporary
STATIC_ROOT (the bench runs collectstatic there, so the manifest storage works as in production)."""

import os

from alma_billing.settings import *  # noqa: F403

ROOT_URLCONF = "bench.reference_views"
STATIC_ROOT = os.environ["BENCH_STATIC_ROOT"]
