"""The Celery application; configuration comes from Django settings under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from alma_billing.log_privacy import handlers_format, handlers_redact

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alma_billing.settings")

app = Celery("alma_billing")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The worker's and beat's own log handlers redact like ours (tokens, query strings, emails, phone numbers).
after_setup_logger.connect(handlers_redact, weak=False)
after_setup_task_logger.connect(handlers_redact, weak=False)
# ... carry the request or task id on every record, and write JSON lines with LOG_FORMAT=json (issue 15).
after_setup_logger.connect(handlers_format, weak=False)
after_setup_task_logger.connect(handlers_format, weak=False)


def close_old_connections(task: Any = None, **kwargs: Any) -> None:
    """Before and after each task in a worker, what Django does around each request: close the connections that
    are older than CONN_MAX_AGE, broken, or left with errors or outside autocommit, and health-check the others
    on their next use (CONN_HEALTH_CHECKS). Celery's own fixup would close every connection after every task;
    CELERY_DB_REUSE_MAX (settings) stops that, so a worker keeps its PostgreSQL connection between tasks.

    Not for a task run eagerly: it runs inside its caller's request or transaction, whose connection is not ours."""
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections as django_close_old_connections

    django_close_old_connections()


task_prerun.connect(close_old_connections, weak=False)
task_postrun.connect(close_old_connections, weak=False)
