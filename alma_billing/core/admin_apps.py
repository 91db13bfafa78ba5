"""The admin app with our staff site as `admin.site`, so every registration lands on the OTP-verified site."""

from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    # A dotted path, imported in ready(): the site module needs django-otp's models, which do not exist yet here.
    default_site = "alma_billing.core.staff_login.StaffAdminSite"

    def ready(self) -> None:
        super().ready()
        from alma_billing.core import staff_login

        staff_login.audit_receivers_connect()
