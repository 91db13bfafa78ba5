"""SMS verification gateways: Twilio Verify in production, a local backend in development. Same contract."""

from enum import StrEnum
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy

from alma_billing.core.errors import TransportError


class CheckResult(StrEnum):
    APPROVED = "approved"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"  # no pending code: expired, already used, or never sent
    TOO_MANY_CHECKS = "too_many_checks"


class VerifyError(TransportError):
    """The gateway refused or failed; `message` is safe to show to the patient and says what to do."""


class SendLimitReached(VerifyError):
    def __init__(self) -> None:
        super().__init__(
            gettext_lazy("We've sent several codes already. Please wait 10 minutes before asking for another one."),
            permanent=True,
        )


class VerifyGateway(Protocol):
    def send_code(self, *, phone_e164: str, locale: str = "en") -> None:
        """Text a code; `locale` is the language of the SMS ("en" or "es")."""

    def check_code(self, *, phone_e164: str, code: str) -> CheckResult: ...


UNAVAILABLE = gettext_lazy("We couldn't send or check a code just now. Please try again in a minute.")


def get_gateway() -> VerifyGateway:
    factory = import_string(settings.VERIFY_GATEWAY)
    return factory()
