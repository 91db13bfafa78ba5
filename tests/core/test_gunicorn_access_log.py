"""The real gunicorn, started by bin/web: its access log shows /pay/[token]/, never a pay link's token or a query."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.integration import workers
from tests.payments.stripe_fake import free_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"


def test_bin_web_access_log_redacts_pay_link_tokens_and_query_strings(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "CONN_MAX_AGE": "0",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "LOG_LEVEL": "DEBUG",
    }
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = workers.test_database_url()  # the tables pytest-django created
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
        requests.get(f"{base}/pay/{TOKEN}/?email=marisol.q%40example.org", timeout=10)
        requests.get(f"{base}/pay/code/", headers={"Referer": f"{base}/pay/{TOKEN}/"}, timeout=10)
        requests.get(f"{base}/pay/{TOKEN}/nothing-here/", timeout=10)  # a 404: Django logs the path too
    finally:
        web.terminate()
        web.wait(timeout=30)
        out.close()
        err.close()

    access = (tmp_path / "stdout.log").read_text()
    errors = (tmp_path / "stderr.log").read_text()
    lines = [line for line in access.splitlines() if "/pay/" in line]
    assert len(lines) == 3, access
    assert '"GET /pay/[token]/?[query] HTTP/1.1"' in lines[0]
    assert '"GET /pay/code/ HTTP/1.1"' in lines[1] and f'"{base}/pay/[token]/"' in lines[1]  # the Referer
    assert '"GET /pay/[token]/nothing-here/ HTTP/1.1" 404' in lines[2]
    for text in (access, errors):
        assert TOKEN not in text and "marisol" not in text and "email=" not in text
    assert "Not Found: /pay/[token]/nothing-here/" in errors  # django.request, through our console handler
