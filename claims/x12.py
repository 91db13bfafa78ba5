"""Reading X12 835 (005010X221A1) remittances with pyx12: validated against the TR3 map, then reduced to the
claim payment lines the true-up needs. Any problem raises `RemittanceFileError` naming the segment."""

import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context

# CLP02 values we settle; 4 is a denial, 22 a reversal of an earlier payment.
CLAIM_STATUS_CODES = {"1", "2", "3", "4", "19", "20", "21", "22", "23", "25"}
DENIED, REVERSAL = "4", "22"
# What pyx12 reports at the envelope levels, and which trailer segment carries that count.
_LEVEL_SEGMENT = {"isa": "IEA", "gs": "GE", "st": "SE"}
_SE_COUNT = re.compile(r"SE count of (\S+) for SE02=\S* is wrong\. I count (\d+)")


class RemittanceFileError(Exception):
    """The file is not a valid 835; the message names the segment (and line) at fault."""


@dataclass(frozen=True)
class Adjustment:
    group: str  # CAS01: PR patient responsibility, CO contractual, OA other, PI payer initiated
    reason: str  # CARC: for PR, 1 deductible, 2 coinsurance, 3 copay
    amount_cents: int


@dataclass
class ClaimLine:
    line: int
    trace_number: str
    claim_number: str  # CLP01, our patient control number
    status_code: str  # CLP02
    charge_cents: int  # CLP03
    paid_cents: int  # CLP04
    patient_responsibility_cents: int  # CLP05 (0 when absent)
    payer_claim_number: str  # CLP07
    adjustments: list[Adjustment] = field(default_factory=list)


@dataclass
class Remittance835:
    trace_number: str  # TRN02 of the first transaction
    payer_name: str
    payer_id: str
    payment_cents: int
    claims: list[ClaimLine]


class _Errors(pyx12.error_handler.errh_null):
    """Collects every error pyx12 finds (errh_null keeps only the last one), with the segment it was on."""

    handle_errors = pyx12.error_handler.err_handler.handle_errors

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.where = "ISA segment"

    def add_seg(self, map_node: Any, seg: Any, seg_count: int, cur_line: int, ls_id: Any) -> None:
        self.where = f"{seg.get_seg_id()} segment (line {cur_line})" if seg is not None else f"line {cur_line}"

    def isa_error(self, err_cde: str, err_str: str) -> None:
        self.found.append(f"{_LEVEL_SEGMENT['isa']} segment: {err_str}")

    def gs_error(self, err_cde: str, err_str: str) -> None:
        self.found.append(f"{_LEVEL_SEGMENT['gs']} segment: {err_str}")

    def st_error(self, err_cde: str, err_str: str) -> None:
        count = _SE_COUNT.match(err_str)
        if count:  # pyx12 counts ST through SE; say it in the words ops use
            err_str = f"SE count is {count[1]} but the transaction has {count[2]} segments (ST through SE)."
        self.found.append(f"{_LEVEL_SEGMENT['st']} segment: {err_str}")

    def seg_error(self, err_cde: str, err_str: str, err_value: Any = None, src_line: Any = None) -> None:
        self.found.append(f"{self.where if src_line is None else f'line {src_line}'}: {err_str}")

    def ele_error(self, err_cde: str, err_str: str, err_val: Any, refdes: Any = None) -> None:
        self.found.append(f"{self.where}: {err_str}")


MAX_AMOUNT_CENTS = 1_000_000_000


def cents(value: str, *, where: str, name: str) -> int:
    """An X12 decimal amount ("150", "150.5", "-20.00") as integer cents; more than 2 decimals is an error."""
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise RemittanceFileError(f"{where}: {name} must be an amount, not {value!r}.") from None
    scaled = amount * 100
    if not amount.is_finite() or scaled != scaled.to_integral_value():
        raise RemittanceFileError(f"{where}: {name} must be an amount in dollars and cents, not {value!r}.")
    if abs(scaled) > MAX_AMOUNT_CENTS:  # X12 allows 18 digits; our money columns (and any real visit) do not
        raise RemittanceFileError(
            f"{where}: {name} is {value}, more than $10,000,000.00; check the file with the payer."
        )
    return int(scaled)


def parse_835(raw_text: str) -> Remittance835:
    """Validate the whole file with pyx12, then read the claim payment lines. Nothing is returned half-read."""
    if not raw_text.strip():
        raise RemittanceFileError("ISA segment: the file is empty.")
    if not raw_text.isascii():
        raise RemittanceFileError("ISA segment: an X12 file is plain ASCII; this one has other characters.")
    errors = _Errors()
    try:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.params(), errors, io.StringIO(raw_text))
        nodes = [(node.id, node.cur_line_number, node.seg_data) for node in reader.iter_segments()]
    except pyx12.errors.X12Error as error:
        raise RemittanceFileError(f"{errors.where}: {error}") from None
    except (pyx12.errors.EngineError, IndexError, KeyError, ValueError) as error:
        raise RemittanceFileError(f"{errors.where}: the file could not be read as X12 ({error}).") from None
    if errors.found:
        raise RemittanceFileError("; ".join(errors.found[:5]))
    return _read(nodes)


def _read(nodes: list[tuple[str, int, Any]]) -> Remittance835:
    trace = payer_name = payer_id = ""
    payment_cents = 0
    current_trace = ""
    claims: list[ClaimLine] = []
    claim: ClaimLine | None = None
    for seg_id, line, seg in nodes:
        where = f"{seg_id} segment (line {line})"
        value = seg.get_value
        if seg_id == "GS" and not str(value("GS08")).startswith("005010X221"):
            raise RemittanceFileError(f"{where}: GS08 must be 005010X221A1 (an 835), not {value('GS08')!r}.")
        elif seg_id == "ST" and value("ST01") != "835":
            raise RemittanceFileError(f"{where}: ST01 must be 835, not {value('ST01')!r}.")
        elif seg_id == "BPR" and not claims:
            payment_cents = cents(value("BPR02"), where=where, name="BPR02")
        elif seg_id == "TRN":
            current_trace = value("TRN02") or ""
            trace, payer_id = trace or current_trace, payer_id or (value("TRN03") or "")
        elif seg_id == "N1" and value("N101") == "PR" and not payer_name:
            payer_name = value("N102") or ""
        elif seg_id == "CLP":
            claim = _claim_line(value, line=line, where=where, trace=current_trace)
            claims.append(claim)
        elif seg_id == "CAS" and claim is not None:
            claim.adjustments.extend(_adjustments(value, where=where))
        elif seg_id in ("SE", "LX"):
            claim = None
    if not trace:
        raise RemittanceFileError("TRN segment: the check or EFT trace number (TRN02) is missing.")
    return Remittance835(trace, payer_name, payer_id, payment_cents, claims)


def _claim_line(value: Any, *, line: int, where: str, trace: str) -> ClaimLine:
    status = value("CLP02") or ""
    if status not in CLAIM_STATUS_CODES:
        raise RemittanceFileError(f"{where}: CLP02 must be a claim status code (1-4, 19-23, 25), not {status!r}.")
    if not value("CLP01") or not value("CLP07"):
        raise RemittanceFileError(f"{where}: CLP01 (our claim number) and CLP07 (the payer's) are both needed.")
    return ClaimLine(
        line=line,
        trace_number=trace,
        claim_number=value("CLP01"),
        status_code=status,
        charge_cents=cents(value("CLP03") or "0", where=where, name="CLP03"),
        paid_cents=cents(value("CLP04") or "0", where=where, name="CLP04"),
        patient_responsibility_cents=cents(value("CLP05") or "0", where=where, name="CLP05"),
        payer_claim_number=value("CLP07"),
    )


def _adjustments(value: Any, *, where: str) -> list[Adjustment]:
    """CAS carries up to six reason/amount/quantity triplets after its group code."""
    group, found = value("CAS01") or "", []
    for reason_at, amount_at in ((2, 3), (5, 6), (8, 9), (11, 12), (14, 15), (17, 18)):
        reason, amount = value(f"CAS{reason_at:02d}"), value(f"CAS{amount_at:02d}")
        if reason:
            found.append(Adjustment(group, reason, cents(amount or "0", where=where, name=f"CAS{amount_at:02d}")))
    return found
