"""Real-shaped X12 835 (005010X221A1) files, laid out as the TR3 does (envelope, counts, loops): for tests, and the
demo remittance `seed_demo` writes for the demo claims."""

from dataclasses import dataclass, field

from claims.models import Claim


@dataclass
class Clp:
    claim_number: str
    status: str = "1"  # CLP02: 1 processed as primary, 4 denied, 22 reversal
    charge_cents: int = 20_000
    paid_cents: int = 12_000
    responsibility_cents: int = 3_000  # CLP05
    payer_claim_number: str = "PCN0001"
    # CAS at the service line: (group, reason, cents); PR 1 deductible, 2 coinsurance, 3 copay.
    adjustments: list[tuple[str, str, int]] = field(default_factory=list)
    cpt: str = "90837"
    service_date: str = "20261101"


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def isa(control: str) -> str:
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "ACMEPAYER".ljust(15), "ZZ", "ALMABILLING".ljust(15),
        "261201", "1200", "^", "00501", control.rjust(9, "0"), "0", "P", ":",
    ]  # fmt: skip
    return "*".join(fields)


def build_835(
    claims: list[Clp],
    *,
    trace: str = "EFT0001",
    payer: str = "ACME HEALTH",
    se_count: int | None = None,
    control: str = "1",
) -> str:
    """One interchange, one functional group, one 835 transaction with every claim under one LX."""
    total = sum(c.paid_cents for c in claims)
    body = [
        f"BPR*I*{money(total)}*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*20261201",
        f"TRN*1*{trace}*1512345678",
        "DTM*405*20261201",
        f"N1*PR*{payer}",
        "N3*1 PAYER WAY",
        "N4*SPRINGFIELD*IL*62701",
        "PER*BL*CLAIMS DEPARTMENT*TE*8005551212",
        "N1*PE*ALMA BILLING*XX*1234567893",
        "LX*1",
    ]
    for c in claims:
        body.append(
            f"CLP*{c.claim_number}*{c.status}*{money(c.charge_cents)}*{money(c.paid_cents)}"
            f"*{money(c.responsibility_cents)}*12*{c.payer_claim_number}"
        )
        body.append("NM1*QC*1*LEE*JORDAN****MI*MEMBER1")
        body.append(f"SVC*HC:{c.cpt}*{money(c.charge_cents)}*{money(c.paid_cents)}**1")
        body.append(f"DTM*472*{c.service_date}")
        for group, reason, cents in c.adjustments:
            body.append(f"CAS*{group}*{reason}*{money(cents)}")
    transaction = ["ST*835*0001", *body]
    transaction.append(f"SE*{se_count if se_count is not None else len(transaction) + 1}*0001")
    segments = [
        isa(control),
        "GS*HP*ACMEPAYER*ALMABILLING*20261201*1200*1*X*005010X221A1",
        *transaction,
        "GE*1*1",
        f"IEA*1*{control.rjust(9, '0')}",
    ]
    return "~\n".join(segments) + "~\n"


def demo_835(claim_numbers: dict[str, str]) -> str:
    """The demo remittance: one claim of each kind the demo data can show. `claim_numbers` maps jordan, sam_first
    and sam_second to their claim numbers."""
    return build_835(
        [
            # Jordan Lee, estimated $70.00: the plan says $90.00 (deductible $50.00, coinsurance $40.00).
            Clp(
                claim_numbers["jordan"],
                charge_cents=15_000,
                paid_cents=6_000,
                responsibility_cents=9_000,
                adjustments=[("PR", "1", 5_000), ("PR", "2", 4_000)],
                payer_claim_number="DEMO-PCN-1",
            ),
            # Sam Patel's first visit, estimated $30.00 copay: the plan says a $20.00 copay. Still open: a credit;
            # paid first: a refund.
            Clp(
                claim_numbers["sam_first"],
                charge_cents=14_000,
                paid_cents=12_000,
                responsibility_cents=2_000,
                adjustments=[("PR", "3", 2_000)],
                payer_claim_number="DEMO-PCN-2",
            ),
            # Sam Patel's second visit: denied (not covered), for a person.
            Clp(
                claim_numbers["sam_second"],
                status="4",
                charge_cents=14_000,
                paid_cents=0,
                responsibility_cents=0,
                adjustments=[("CO", "50", 14_000)],
                payer_claim_number="DEMO-PCN-3",
            ),
            # Not one of ours.
            Clp("OTHER00000001", payer_claim_number="DEMO-PCN-4"),
        ],
        trace="DEMO-EFT-0001",
    )


def demo_claim_numbers() -> dict[str, str] | None:
    """The seeded demo patients' claim numbers, or None when the demo data is not there."""
    jordan = Claim.objects.filter(session__patient__email="jordan.lee@example.com").order_by("session__date_of_service")
    sam = Claim.objects.filter(session__patient__email="sam.patel@example.com").order_by("session__date_of_service")
    numbers = list(jordan.values_list("claim_number", flat=True)[:1]) + list(
        sam.values_list("claim_number", flat=True)[:2]
    )
    return dict(zip(["jordan", "sam_first", "sam_second"], numbers, strict=True)) if len(numbers) == 3 else None
