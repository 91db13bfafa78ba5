from django.apps import AppConfig


class ClaimsConfig(AppConfig):
    name = "claims"
    verbose_name = "Claims and remittances"

    def ready(self) -> None:
        # invoices calls up through its hooks (invoices/hooks.py); it never imports the layers above it.
        from claims import services
        from invoices import hooks

        hooks.claim_open.register(services.claim_for_session)
