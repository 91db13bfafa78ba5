"""URL routes: patient pages under /pay/, staff in /admin/, health and the dev outbox."""

from django.contrib import admin
from django.urls import path

from alma_billing.core import email_tracking
from alma_billing.core import views as core_views
from alma_billing.core.language import language_switch
from alma_billing.ops.dashboard import ops_dashboard
from payments import receipt_views
from payments import views as payment_views
from verification import views as verification_views

# Patient-styled error pages (issue 10); the CSRF failure page is CSRF_FAILURE_VIEW in settings.
handler400 = "alma_billing.core.error_pages.bad_request"
handler403 = "alma_billing.core.error_pages.permission_denied"
handler404 = "alma_billing.core.error_pages.page_not_found"
handler500 = "alma_billing.core.error_pages.server_error"

# admin.site is alma_billing.core.staff_login.StaffAdminSite: staff need a second factor (docs/security.md "Staff
# access").
urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(ops_dashboard), name="ops-dashboard"),
    path("admin/", admin.site.urls),
    path("healthz", core_views.healthz, name="healthz"),
    path("stripe/webhook/", payment_views.stripe_webhook, name="stripe-webhook"),
    path("email/mailgun/tracking/", email_tracking.mailgun_tracking_webhook, name="email-tracking"),  # issue 15
    # Fixed paths first: a token never equals these words (it is 43 characters).
    path("pay/code/", verification_views.pay_code, name="pay-code"),
    path("pay/code/resend/", verification_views.pay_code_resend, name="pay-code-resend"),
    path("pay/invoices/", payment_views.pay_summary, name="pay-summary"),
    path("pay/invoices/details/", payment_views.pay_details, name="pay-details"),
    path("pay/invoices/<str:number>/", payment_views.pay_invoice_detail, name="pay-invoice"),
    path("pay/checkout/", payment_views.pay_checkout, name="pay-checkout"),
    path("pay/checkout/start/", payment_views.pay_checkout_start, name="pay-checkout-start"),
    path("pay/card/confirm/", payment_views.pay_card_confirm, name="pay-card-confirm"),
    path("pay/card/attempt/<str:attempt_key>/", payment_views.pay_attempt, name="pay-attempt"),
    path("pay/card/<str:checkout_id>/", payment_views.pay_card, name="pay-card"),
    path("pay/payments/<int:payment_id>/", payment_views.pay_result, name="pay-result"),
    path("pay/payments/<int:payment_id>/refresh/", payment_views.pay_refresh, name="pay-refresh"),
    path("pay/payments/<int:payment_id>/retry/", payment_views.pay_retry, name="pay-retry"),
    path("pay/payments/<int:payment_id>/receipt.pdf", payment_views.pay_receipt, name="pay-receipt"),
    path("pay/autopay/", payment_views.pay_autopay, name="pay-autopay"),
    path("pay/autopay/enroll/", payment_views.pay_autopay_enroll, name="pay-autopay-enroll"),
    path("pay/autopay/end/", payment_views.pay_autopay_end, name="pay-autopay-end"),
    path("pay/language/", language_switch, name="pay-language"),
    path("pay/receipts/", receipt_views.pay_receipts_request, name="pay-receipts"),
    path("pay/sign-out/", verification_views.pay_sign_out, name="pay-sign-out"),
    path("pay/<str:token>/", verification_views.pay_link_landing, name="pay-link"),
    # Answers 404 unless DEBUG is on.
    path("dev/outbox/", core_views.dev_outbox, name="dev-outbox"),
]
