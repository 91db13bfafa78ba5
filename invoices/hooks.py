"""What invoices asks of the layers above it (payments, verification, claims) without importing them.

invoices sits low in the layers (docs/architecture.md): it may not import the apps that build on it. Where an
invoice flow needs them (announce a new invoice by autopay or by link, cancel the autopay charges of a voided
invoice, put a pay link in an email, open the session's claim), it calls a hook defined here, and the upper app
registers its service in its AppConfig.ready(). A hook nobody registered fails loudly: there is no safe default
for money or for access to a patient's page.
"""

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model

from alma_billing.core.audit import Actor
from invoices.models import Invoice, Patient, TherapySession

F = TypeVar("F", bound=Callable[..., Any])


class Hook(Generic[F]):
    """One function an upper layer provides; `hook.call(...)` runs it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._fn: F | None = None

    def register(self, fn: F) -> None:
        self._fn = fn

    @property
    def call(self) -> F:
        if self._fn is None:
            raise ImproperlyConfigured(f"No installed app registered the invoices hook {self.name!r}.")
        return self._fn


class _Announce(Protocol):
    def __call__(self, *, invoice_id: int, invoice: Invoice | None = None) -> bool: ...


class _Voided(Protocol):
    def __call__(self, *, invoice_id: int, reason: str) -> object: ...


class _PayLinkEmailContext(Protocol):
    def __call__(self, *, patient: Patient, invoice: Invoice | None) -> tuple[Model, dict[str, object]]: ...


class _PayLinksRevoke(Protocol):
    def __call__(self, *, patient: Patient, reason: str, actor: Actor) -> int: ...


class _PhoneNormalize(Protocol):
    def __call__(self, raw: str) -> str | None: ...


class _ClaimOpen(Protocol):
    def __call__(self, session: TherapySession) -> object: ...


# Tell the patient about a new invoice: the autopay notice where autopay applies, else the link email (payments).
# Returns whether the link email went out. `invoice`: the caller's copy, created or locked in its open transaction
# with patient and practice loaded, used as it is (no second read and lock).
invoice_announce: Hook[_Announce] = Hook("invoice_announce")
# Inside the voiding transaction: the invoice's scheduled automatic charges will not happen (payments).
invoice_voided: Hook[_Voided] = Hook("invoice_voided")
# A fresh pay link and what every patient email says around it (verification).
pay_link_email_context: Hook[_PayLinkEmailContext] = Hook("pay_link_email_context")
# End every live pay link of a patient (verification).
pay_links_revoke: Hook[_PayLinksRevoke] = Hook("pay_links_revoke")
# A phone number in E.164 form, or None when it is not a valid US number (verification).
phone_normalize: Hook[_PhoneNormalize] = Hook("phone_normalize")
# Inside the billing transaction: open the session's claim when it is billed to a plan (claims, P13).
claim_open: Hook[_ClaimOpen] = Hook("claim_open")
