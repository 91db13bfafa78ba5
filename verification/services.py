"""Pay-link tokens: at least 128 bits (we use 256), shown once in the email, stored hashed, with an expiry."""

import hashlib
import secrets

from django.conf import settings
from django.utils import timezone

from invoices.models import Invoice, Patient
from verification.models import PayLink


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pay_link_create(*, patient: Patient, invoice: Invoice | None = None) -> tuple[PayLink, str]:
    """Returns the stored link and the raw token, which only the email ever carries."""
    token = secrets.token_urlsafe(32)
    link = PayLink.objects.create(
        token_hash=_hash(token),
        patient=patient,
        invoice=invoice,
        expires_at=timezone.now() + settings.PAY_LINK_TTL,
    )
    return link, token


def pay_link_find(token: str) -> PayLink | None:
    """The link for a token, expired or not; None for anything unknown (including malformed tokens)."""
    if not 20 <= len(token) <= 128:
        return None
    return PayLink.objects.filter(token_hash=_hash(token)).first()


def pay_link_url(token: str) -> str:
    return f"{settings.SITE_URL}/pay/{token}/"
