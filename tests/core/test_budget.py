"""The outside-call budget: each request's Stripe/Twilio calls together stay below the web worker's timeout."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alma_billing.core import budget

ROOT = Path(__file__).resolve().parents[2]


def test_calls_are_cut_to_what_is_left_and_stop_when_nothing_is() -> None:
    assert budget.call_timeout(8.0) == 8.0  # outside a request: the call's own timeout
    with budget.outside_call_budget(3.0):
        assert budget.call_timeout(8.0) <= 3.0
        assert budget.call_retries(1.0, 5) <= 2
        time.sleep(2.6)
        with pytest.raises(budget.BudgetExhausted):
            budget.call_timeout(8.0)
        assert budget.call_retries(1.0, 5) == 0


def test_a_budget_that_does_not_fit_inside_the_worker_timeout_stops_startup() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "alma_billing.settings_test", "GUNICORN_TIMEOUT": "20"}
    env["OUTSIDE_CALL_BUDGET_SECONDS"] = "20"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "OUTSIDE_CALL_BUDGET_SECONDS (20) must be at least 5 s below GUNICORN_TIMEOUT (20)" in result.stderr


def test_bin_web_uses_the_same_timeout_the_settings_check(tmp_path: Path) -> None:
    script = (ROOT / "bin" / "web").read_text()
    assert '--timeout "${GUNICORN_TIMEOUT:-30}"' in script


def test_in_production_a_failing_in_process_task_is_logged_not_raised(settings, caplog) -> None:
    """Without Redis tasks run in-process after the commit; a failure there must not turn a paid patient's page into
    a 500 (the sweeps retry it). The test settings raise instead, so tests see task bugs."""
    import logging

    from alma_billing.celery_app import app
    from alma_billing.core.queue import enqueue

    @app.task(name="tests.failing_task")
    def failing_task() -> None:
        raise RuntimeError("boom")

    settings.ENQUEUE_RAISE_TASK_ERRORS = False
    with caplog.at_level(logging.ERROR, logger="alma_billing.core.queue"):
        assert enqueue(failing_task) is False
    assert "tests.failing_task" in caplog.text and "failed in-process" in caplog.text
    settings.ENQUEUE_RAISE_TASK_ERRORS = True
    with pytest.raises(RuntimeError, match="boom"):
        enqueue(failing_task)
