"""Alma billing: patient invoice payments. Importing the Celery app here lets `@shared_task` bind to it."""

from alma_billing.celery_app import app as celery_app

__all__ = ["celery_app"]
