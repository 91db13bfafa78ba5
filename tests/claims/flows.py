"""Claims steps the tests share: the first visit estimate, importing an 835 file, and a reversal line."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from claims.models import Claim
from claims.samples import Clp

ESTIMATE = 3_000  # 20% of the $150.00 allowed amount


def run(tmp_path: Path, text: str, *flags: str, name: str = "era.835") -> str:
    path = tmp_path / name
    path.write_text(text)
    out = StringIO()
    call_command("import_remittance", str(path), *flags, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_failing(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.835"
    path.write_text(text)
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_remittance", str(path), stdout=StringIO(), stderr=err)
    return err.getvalue()


def reversal(claim: Claim, cents: int, payer_claim_number: str = "PCN0001") -> Clp:
    return Clp(
        claim.claim_number,
        status="22",
        charge_cents=-20_000,
        paid_cents=-12_000,
        responsibility_cents=-cents,
        payer_claim_number=payer_claim_number,
    )
