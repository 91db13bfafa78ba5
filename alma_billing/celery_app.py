"""The Celery application; configuration comes from Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

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
