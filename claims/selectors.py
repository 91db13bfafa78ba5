"""Reads for claims."""

from collections.abc import Iterable

from claims.models import Claim


def claim_numbers_for(*, session_ids: Iterable[int]) -> dict[int, str]:
    """Session id -> claim number, for the sessions that have a claim (one query)."""
    rows = Claim.objects.filter(session_id__in=list(session_ids)).values_list("session_id", "claim_number")
    return dict(rows)
