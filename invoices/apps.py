from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Connects the email service's `tracking` signal (bounces, complaints) to the patients' addresses.
        from invoices import deliverability  # noqa: F401
