from django.apps import AppConfig


class ClaimsConfig(AppConfig):
    name = "claims"
    verbose_name = "Claims and remittances"

    def ready(self) -> None:
        from claims import services
        from invoices import hooks

        hooks.claim_open.register(services.claim_for_session)
