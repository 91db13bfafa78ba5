"""Throwaway PostgreSQL bench databases and the Django setup the bench/ scripts share."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "pgsql", "psql"})


def bench_database_url(script: str, database: str, *, default: str = "") -> str:
    """DATABASE_URL (or `default`) pointed at the throwaway `database`; `script` exits on anything but PostgreSQL."""
    url = os.environ.get("DATABASE_URL", default)
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        sys.exit(f"{script} needs PostgreSQL: set DATABASE_URL=postgres://user@host:port/db (not SQLite).")
    return urlunsplit(parts._replace(path=f"/{database}"))


def admin_connection(url: str) -> psycopg2.extensions.connection:
    """An autocommit connection to the server's `postgres` maintenance database (same host, port and user)."""
    parts = urlsplit(url)
    conn = psycopg2.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
    )
    conn.autocommit = True
    return conn


def drop_database(url: str, database: str, *, recreate: bool = False) -> None:
    """Drop `database` (closing its connections), then create it empty again if `recreate`."""
    conn = admin_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if recreate:
                cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()


def django_setup(url: str, script: str) -> None:
    """Django on the test settings against `url`; `script` exits unless the connection is PostgreSQL."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "alma_billing.settings_test"
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # one INFO line per email would time the terminal, not us
    sys.path.insert(0, str(ROOT))
    import django
    from django.db import connection

    django.setup()
    if connection.vendor != "postgresql":
        sys.exit(f"{script} needs PostgreSQL, got {connection.vendor}.")


def migrate() -> None:
    """Refuse models without a migration (makemigrations --check), then migrate the bench database."""
    from django.core.management import call_command

    try:
        call_command("makemigrations", check=True, dry_run=True, verbosity=0)
    except SystemExit:
        sys.exit("The models have changes without a migration (makemigrations --check); the bench cannot run yet.")
    call_command("migrate", verbosity=0, interactive=False)


def raw_connection() -> psycopg2.extensions.connection:
    """A plain psycopg2 connection to the database Django's default connection uses (not in autocommit)."""
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("context", None)
    params.pop("cursor_factory", None)
    return psycopg2.connect(**params)


def print_profile(profiler: Any, label: str) -> None:
    """The top of a cProfile: the project's own functions by cumulative time, then own time anywhere."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(f"^{ROOT}/(?!\\.venv)", 20)
    stats.strip_dirs().sort_stats("tottime").print_stats(15)
    noise = ("function calls", "Ordered by", "List reduced")
    print(f"=== profile: {label}")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip() and not any(n in line for n in noise)))
