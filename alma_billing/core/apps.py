from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "alma_billing.core"
    label = "core"
    verbose_name = "Audit and core"
