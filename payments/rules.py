"""Payments' pure rules: benefit-card detection (P7) and the autopay consent's wording (P6).

Plain functions, in the manner of `invoices/responsibility.py`: no database, no Stripe SDK, no clock. They read
their configuration from settings and their wording from the active translation.
"""

from collections.abc import Sequence
from typing import Protocol

from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, gettext_noop, ngettext


class CardFacts(Protocol):
    """What Stripe tells us about a card that can mark it as a benefit card (`payments.gateways.stripe.Card`)."""

    @property
    def funding(self) -> str: ...

    @property
    def iin(self) -> str: ...

    @property
    def issuer(self) -> str: ...


class Named(Protocol):
    @property
    def name(self) -> str: ...


# The consent's wording, versioned: an enrollment keeps the version, the language and the exact text the patient
# agreed to (the legal record); change the version whenever the English wording changes.
# 2026-1: the email promise follows AUTOPAY_NOTICE_DAYS (with 0 the notice goes out with the charge, not before it).
CONSENT_VERSION = "2026-1"
CONSENT = gettext_lazy(
    "I authorize Alma to charge the card I am adding for each new invoice from my providers' practices that offer "
    "autopay{practices}, {when}. {notice} I can turn autopay off or change the card at any time on this page; "
    "turning it off stops future charges."
)


def consent_text(*, practices: Sequence[Named]) -> str:
    """The consent in the active language (the page the patient reads and agrees on)."""
    names = f" ({', '.join(p.name for p in practices)})" if practices else ""
    days = settings.AUTOPAY_NOTICE_DAYS
    when = (
        gettext("on the day the invoice is issued")
        if days == 0
        else ngettext("{days} day after the invoice is issued", "{days} days after the invoice is issued", days).format(
            days=days
        )
    )
    notice = (
        gettext("Alma emails me at the time of each charge and sends a receipt after.")
        if days == 0
        else ngettext(
            "Alma emails me {days} day before each charge and sends a receipt after.",
            "Alma emails me {days} days before each charge and sends a receipt after.",
            days,
        ).format(days=days)
    )
    return CONSENT.format(practices=names, when=when, notice=notice)


def benefit_card_reason(*, card: CardFacts, declared: bool) -> str | None:
    """Why a card is an FSA/HSA/HRA card, or None. Stripe does not flag them, so this is ours (P7)."""
    if declared:
        return gettext_noop("you told us it is one")
    if card.funding == "prepaid":
        return gettext_noop("it is a prepaid card, as benefit cards are")
    if card.iin and any(card.iin.startswith(prefix) for prefix in settings.BENEFIT_CARD_BIN_PREFIXES if prefix):
        return gettext_noop("its card number belongs to a benefit card program")
    issuer = card.issuer.lower()
    if issuer and any(word.lower() in issuer for word in settings.BENEFIT_CARD_ISSUER_WORDS if word):
        return gettext_noop("it is issued by a benefits administrator")
    return None
