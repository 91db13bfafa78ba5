"""The real gunicorn, started by bin/web: its access log shows /pay/[token]/, never a pay link's token or a query."""

from pathlib import Path

import pytest
import requests

from tests.integration import workers

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"


def test_bin_web_access_log_redacts_pay_link_tokens_and_query_strings(tmp_path: Path) -> None:
    with workers.bin_web(tmp_path, LOG_LEVEL="DEBUG") as base:
        requests.get(f"{base}/pay/{TOKEN}/?email=marisol.q%40example.org", timeout=10)
        requests.get(f"{base}/pay/code/", headers={"Referer": f"{base}/pay/{TOKEN}/"}, timeout=10)
        requests.get(f"{base}/pay/{TOKEN}/nothing-here/", timeout=10)  # a 404: Django logs the path too

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
