"""Reads for claims."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, IntegerField, Q, Sum, Value

from claims.models import Claim, ClaimPayment, InvoiceCredit
from invoices.models import Invoice


def claim_number_of(session: Any) -> str:
    """The session's claim number for admin pages, or "-" (self-pay, covered EAP, not billed yet)."""
    claim = Claim.objects.filter(session_id=getattr(session, "pk", None)).only("claim_number").first()
    return claim.claim_number if claim else "-"


def claim_numbers_for(*, session_ids: Iterable[int]) -> dict[int, str]:
    """Session id -> claim number, for the sessions that have a claim (one query)."""
    rows = Claim.objects.filter(session_id__in=list(session_ids)).values_list("session_id", "claim_number")
    return dict(rows)


@dataclass(frozen=True)
class ClaimsWaiting:
    """P13 work for the ops dashboard: what waits for a person, for Stripe or for the patient."""

    denials: int  # denied by the plan, not cleared by a person
    unsettled: int  # claims the import could not settle (a payment in flight, an EAP session the plan bills...)
    adjustments_open: int  # adjustment invoices the patient has not paid yet
    adjustments_open_cents: int
    refunds_waiting: int  # refunds a remittance decided that Stripe has not made yet (the next import retries)
    refunds_waiting_cents: int
    credits_recent: int  # open invoices reduced by a credit in the last 30 days


def claims_waiting(*, now: datetime) -> ClaimsWaiting:
    """Four aggregate queries, whatever the number of claims."""
    zero = Value(0, IntegerField())
    claims = Claim.objects.exclude(attention="").aggregate(
        denials=Count("id", filter=Q(status=Claim.Status.DENIED)),
        unsettled=Count("id", filter=~Q(status=Claim.Status.DENIED)),
    )
    adjustments = Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT, status=Invoice.Status.OPEN).aggregate(
        count=Count("id"), cents=Sum(F("amount_cents") - F("credited_cents"), default=zero)
    )
    refunds = ClaimPayment.objects.filter(refund_cents__gt=0, refund__isnull=True).aggregate(
        count=Count("id"), cents=Sum("refund_cents", default=zero)
    )
    credits = InvoiceCredit.objects.filter(created_at__gte=now - timedelta(days=30), canceled_at__isnull=True).count()
    return ClaimsWaiting(
        denials=claims["denials"],
        unsettled=claims["unsettled"],
        adjustments_open=adjustments["count"],
        adjustments_open_cents=int(adjustments["cents"]),
        refunds_waiting=refunds["count"],
        refunds_waiting_cents=int(refunds["cents"]),
        credits_recent=credits,
    )
