"""Start a real Celery worker on Redis against the test database, for integration tests."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import connection

from alma_billing.celery_app import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """DATABASE_URL with the database name swapped for the test database pytest-django created."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@contextmanager
def celery_worker(
    *, redis_url: str, outbox_dir: Path, log_path: Path, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process (prefork, 1 child) that the in-process app sends to; stopped and reaped on exit."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "OUTBOX_DIR": str(outbox_dir),
        "CONN_MAX_AGE": "0",
        **extra_env,
    }
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url  # type: ignore[misc]  # the stubs miss its setter
    celery_app.control.purge()  # leftovers from an earlier run would only confuse the worker
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "alma_billing",
            "worker",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Celery worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER


@contextmanager
def bin_web(tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """The real gunicorn as production starts it (bin/web, one worker) on a free port against the test database,
    its stdout/stderr in tmp_path/stdout.log and stderr.log; yields its base URL once /healthz answers."""
    from tests.payments.stripe_fake import free_port

    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "CONN_MAX_AGE": "0",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        **extra_env,
    }
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = test_database_url()  # the tables pytest-django created
    out, err = (tmp_path / "stdout.log").open("wb"), (tmp_path / "stderr.log").open("wb")
    web = subprocess.Popen([str(ROOT / "bin" / "web")], cwd=ROOT, env=env, stdout=out, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=10)  # the first request imports the app: slow when loaded
                break
            except (requests.ConnectionError, requests.Timeout):
                assert web.poll() is None, (tmp_path / "stderr.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield base
    finally:
        web.terminate()
        web.wait(timeout=30)
        out.close()
        err.close()


def wait_for(predicate, *, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
