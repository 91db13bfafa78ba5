from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # invoices calls up through its hooks (invoices/hooks.py); it never imports the layers above it.
        from invoices import hooks
        from payments import autopay
        from verification import services as verification

        hooks.invoice_announce.register(autopay.invoice_announce)
        hooks.invoice_voided.register(autopay.autopay_scheduled_cancel)
        # verification's own services, wired here: payments is the lowest layer that sees both apps (and
        # verification/apps.py is not ours to change in this pass).
        hooks.pay_link_email_context.register(verification.pay_link_email_context)
        hooks.pay_links_revoke.register(verification.pay_links_revoke)
        hooks.phone_normalize.register(verification.normalize_phone)
