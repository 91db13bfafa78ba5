"""URL routes: patient pages under /pay/, staff in /admin/, health and the dev outbox."""

from django.contrib import admin
from django.urls import path

from alma_billing.core import views as core_views
from verification import views as verification_views

admin.site.site_header = "Alma billing"
admin.site.site_title = "Alma billing"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", core_views.healthz, name="healthz"),
    path("pay/<str:token>/", verification_views.pay_link_landing, name="pay-link"),
    # Answers 404 unless DEBUG is on.
    path("dev/outbox/", core_views.dev_outbox, name="dev-outbox"),
]
