from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "alma_billing.core"
    label = "core"
    verbose_name = "Audit and core"

    def ready(self) -> None:
        post_migrate.connect(staff_groups_ensure, dispatch_uid="alma-staff-groups")
        post_migrate.connect(periodic_tasks_ensure, dispatch_uid="alma-periodic-tasks")


# What each staff group may do in the admin; row-level scoping for providers lives in the admin classes.
PROVIDER_PERMISSIONS = [
    "invoices.view_practice",
    "invoices.view_provider",
    "invoices.add_patient",
    "invoices.change_patient",
    "invoices.view_patient",
    "invoices.add_coverage",
    "invoices.change_coverage",
    "invoices.view_coverage",
    "invoices.add_eligibilitysnapshot",
    "invoices.view_eligibilitysnapshot",
    "invoices.add_eapauthorization",
    "invoices.view_eapauthorization",
    "invoices.add_therapysession",
    "invoices.change_therapysession",
    "invoices.view_therapysession",
    "invoices.view_invoice",
    "invoices.change_invoice",
    "invoices.view_reminderlog",
    "payments.view_payment",
    "payments.view_paymentallocation",
    "payments.view_refund",
    "payments.view_autopayenrollment",
    # P13: their own claims with the plan's decisions and credits (scoped in claims/admin.py); never remittances.
    "claims.view_claim",
    "claims.view_claimpayment",
    "claims.view_invoicecredit",
    "payments.view_autopayattempt",
]


def staff_groups_ensure(sender: Any, **kwargs: Any) -> None:
    """Create the "Ops" (everything billing, refunds included) and "Providers" groups after each migrate."""
    from django.contrib.auth.models import Group, Permission

    from alma_billing.core.staff import OPS_GROUP  # here: apps.py is imported before the admin models it needs

    del sender, kwargs
    # Runs after every app's migrations (permissions of later apps only exist by then); the last run wins.
    # The groups are defined here, in code: a migrate resets their permissions to this list.
    ops, _ = Group.objects.get_or_create(name=OPS_GROUP)
    ops.permissions.set(
        Permission.objects.filter(
            # axes: ops unlock a locked-out colleague by deleting their "access attempt" in the admin.
            content_type__app_label__in=[
                "invoices",
                "payments",
                "verification",
                "core",
                "django_celery_beat",
                "axes",
                "claims",
            ]
        )
    )
    providers, _ = Group.objects.get_or_create(name="Providers")
    wanted: list[Permission] = []
    for dotted in PROVIDER_PERMISSIONS:
        app_label, codename = dotted.split(".")
        wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    providers.permissions.set(wanted)


def periodic_tasks_ensure(sender: Any, **kwargs: Any) -> None:
    """Create the default periodic tasks that are missing; leave every existing one as ops set it."""
    from django.conf import settings
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    if sender.label != "django_celery_beat":
        return
    from django.db import connections

    connection = connections[kwargs.get("using", "default")]
    if PeriodicTask._meta.db_table not in connection.introspection.table_names():
        return  # a partial migrate (e.g. `migrate auth`): the tables come later
    for name, (task, when) in settings.PERIODIC_TASK_DEFAULTS.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        if isinstance(when, int):
            interval, _ = IntervalSchedule.objects.get_or_create(every=when, period=IntervalSchedule.MINUTES)
            PeriodicTask.objects.create(name=name, task=task, interval=interval)
        else:
            hour, minute = when.split(":")
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=str(int(minute)),
                hour=str(int(hour)),
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                timezone=settings.TIME_ZONE,
            )
            PeriodicTask.objects.create(name=name, task=task, crontab=crontab)
