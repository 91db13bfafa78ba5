"""Twilio Verify: the only module that imports `twilio`. Sends and checks SMS codes, maps errors for patients."""

import logging
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from alma_billing.core import budget
from verification.gateways import UNAVAILABLE, CheckResult, SendLimitReached, VerifyError

logger = logging.getLogger(__name__)

# Twilio error codes we act on (https://www.twilio.com/docs/api/errors).
NOT_FOUND = 20404  # verification expired, already approved, or never created
MAX_CHECKS = 60202
MAX_SENDS = 60203
INVALID_NUMBER = {21211, 21614, 60200, 60205}  # not a number, not mobile, invalid parameter, SMS not supported
RATE_LIMITED = 20429


class TwilioVerifyGateway:
    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        service_sid: str | None = None,
        http_client: Any = None,
        timeout: float | None = None,
    ) -> None:
        self.service_sid = service_sid or settings.TWILIO_VERIFY_SERVICE_SID
        if http_client is None:
            # One try and one retry, each cut to what is left of the request's outside-call budget.
            try:
                per_try = budget.call_timeout(timeout or settings.TWILIO_TIMEOUT_SECONDS) / 2
            except budget.BudgetExhausted:
                per_try = budget.MINIMUM_CALL_SECONDS
            http_client = TwilioHttpClient(timeout=per_try, max_retries=1)
        self.client = Client(
            account_sid or settings.TWILIO_ACCOUNT_SID,
            auth_token or settings.TWILIO_AUTH_TOKEN,
            http_client=http_client,
        )

    def _service(self) -> Any:
        return self.client.verify.v2.services(self.service_sid)

    def send_code(self, *, phone_e164: str, locale: str = "en") -> None:
        # Twilio Verify writes the SMS itself, in `locale`; English is what it picks for US numbers anyway.
        options = {"locale": locale} if locale != "en" else {}
        try:
            verification = self._service().verifications.create(to=phone_e164, channel="sms", **options)
        except (TwilioRestException, TwilioServiceException) as error:
            if error.code == MAX_SENDS:
                raise SendLimitReached() from error
            raise self._mapped(error, action="send") from error
        except (TwilioException, OSError) as error:
            logger.warning("twilio verify send failed: %s", type(error).__name__)
            raise VerifyError(UNAVAILABLE, permanent=False) from error
        logger.info("twilio verify sent, status %s", verification.status)

    def check_code(self, *, phone_e164: str, code: str) -> CheckResult:
        try:
            check = self._service().verification_checks.create(to=phone_e164, code=code)
        except (TwilioRestException, TwilioServiceException) as error:
            if error.code == NOT_FOUND:
                return CheckResult.EXPIRED
            if error.code == MAX_CHECKS:
                return CheckResult.TOO_MANY_CHECKS
            raise self._mapped(error, action="check") from error
        except (TwilioException, OSError) as error:
            logger.warning("twilio verify check failed: %s", type(error).__name__)
            raise VerifyError(UNAVAILABLE, permanent=False) from error
        return CheckResult.APPROVED if check.status == "approved" else CheckResult.WRONG_CODE

    @staticmethod
    def _mapped(error: TwilioRestException | TwilioServiceException, *, action: str) -> VerifyError:
        logger.warning("twilio verify %s refused: HTTP %s code %s", action, error.status, error.code)
        if error.code in INVALID_NUMBER and action == "send":
            return VerifyError(
                gettext_lazy(
                    "We couldn't text that number. If it's not a mobile number, please contact your provider to update "
                    "the phone number on your profile."
                ),
                permanent=True,
            )
        retryable = error.code == RATE_LIMITED or error.status >= 500
        return VerifyError(UNAVAILABLE, permanent=not retryable)
