"""P8: receipts a patient can submit to an FSA, HSA or HRA: a discreet email and an itemized PDF."""

import hashlib
import logging
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.template.defaultfilters import date as date_format
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext, gettext_lazy, ngettext
from fpdf import FPDF

from alma_billing.core.audit import SYSTEM, AuditAction, audit_record
from alma_billing.core.mail import send_patient_email
from alma_billing.core.money import format_cents
from alma_billing.core.queue import enqueue_on_commit
from alma_billing.core.templatetags.patient_dates import day_format
from claims.selectors import claim_numbers_for
from invoices.models import Patient
from payments.models import Payment, PaymentAllocation, ReceiptLinkRequest
from payments.rules import card_label
from verification.services import _network, pay_link_email_context

logger = logging.getLogger(__name__)
# fpdf2 subsets the embedded fonts through fontTools, which logs every table it touches at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FSA_STATEMENT = gettext_lazy(
    "This receipt shows payment for services received and may be submitted to your FSA, HSA or HRA for reimbursement."
)


FONTS_DIR = Path(__file__).resolve().parent / "fonts"
# DejaVu Sans (Bitstream Vera licence): Latin with Vietnamese, Greek, Cyrillic, Armenian, Georgian, Hebrew and more.
# Droid Sans Fallback (Apache 2.0) fills in what DejaVu lacks: Chinese, Japanese and Korean; its "Full" cut adds rarer
# Chinese characters but has no Korean, so both are kept. Each fallback is loaded only for a receipt that needs it
# (parsing one costs a few tenths of a second).
FONT = "DejaVu"
FALLBACK_FONTS = (("DroidFallback", "DroidSansFallback.ttf"), ("DroidFallbackFull", "DroidSansFallbackFull.ttf"))
PAYEE = "Alma"


@lru_cache(maxsize=4)
def _codepoints(filename: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    with TTFont(FONTS_DIR / filename, lazy=True) as font:
        return frozenset(font.getBestCmap())


def _fallbacks_needed(texts: list[str]) -> list[tuple[str, str]]:
    """The fallback fonts (name, file) that cover what the main font cannot print of `texts`, in order."""
    missing = {ord(char) for text in texts for char in text if not char.isspace()} - _codepoints("DejaVuSans.ttf")
    needed = []
    for name, filename in FALLBACK_FONTS:
        if not missing:
            break
        covered = missing & _codepoints(filename)
        if covered:
            needed.append((name, filename))
            missing -= covered
    return needed


def _clean(text: str) -> str:
    """What a PDF string can carry: no control characters (a NUL or a lone surrogate in a stored name)."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(char for char in text if char >= " " or char == "\n")


def _receipt_document(names: list[str]) -> FPDF:
    pdf = FPDF(format="Letter")
    pdf.add_font(FONT, "", FONTS_DIR / "DejaVuSans.ttf")
    pdf.add_font(FONT, "B", FONTS_DIR / "DejaVuSans-Bold.ttf")
    fallbacks = _fallbacks_needed(names)
    for name, filename in fallbacks:
        pdf.add_font(name, "", FONTS_DIR / filename)
    if fallbacks:
        pdf.set_fallback_fonts([name for name, _ in fallbacks], exact_match=False)
    return pdf


def settled_cents(payment: Payment) -> int:
    """What the payment actually paid; a share that duplicated another payment was refunded."""
    settled = PaymentAllocation.objects.filter(payment=payment, state=PaymentAllocation.State.SETTLED)
    return sum(settled.values_list("amount_cents", flat=True))


def receipt_pdf(payment: Payment, *, language: str | None = None) -> bytes:
    """An itemized receipt: each invoice's date of service, provider and NPI, CPT code and amount; in `language`
    (default: the patient's preferred language)."""
    with translation.override(language or payment.patient.preferred_language):
        return _receipt_pdf(payment)


def _receipt_pdf(payment: Payment) -> bytes:
    allocations = list(
        PaymentAllocation.objects.filter(payment=payment, state=PaymentAllocation.State.SETTLED)
        .select_related("invoice__session", "invoice__provider")
        .order_by("invoice__session__date_of_service", "invoice_id")
    )
    patient = payment.patient
    paid_on = timezone.localtime(payment.succeeded_at or payment.created_at)
    patient_name = _clean(f"{patient.first_name} {patient.last_name}")
    providers = [_clean(a.invoice.provider.display_name) for a in allocations]
    pdf = _receipt_document([patient_name, *providers])
    pdf.set_title(_clean(gettext("Receipt {reference}").format(reference=payment.reference)))
    pdf.set_author(PAYEE)
    pdf.add_page()
    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 10, _clean(gettext("Payment receipt")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=11)
    rows = [
        (gettext("Receipt"), payment.reference),
        (gettext("Paid to"), PAYEE),
        (gettext("Patient"), patient_name),
        (gettext("Payment date"), date_format(paid_on, day_format("long"))),
        (
            gettext("Paid with"),
            str(card_label(payment.card_brand, payment.card_last4)),
        ),
        (gettext("Amount paid"), format_cents(sum(a.amount_cents for a in allocations))),
    ]
    for label, value in rows:
        pdf.cell(45, 7, _clean(label))
        pdf.multi_cell(0, 7, _clean(value), new_x="LMARGIN", new_y="NEXT")  # a long name wraps, never overflows
    pdf.ln(4)
    pdf.set_font(FONT, "B", 9)
    widths = (30, 28, 62, 30, 18, 26)
    headers = (gettext("Invoice"), gettext("Date of service"), gettext("Provider"), "NPI", "CPT", gettext("Amount"))
    for width, header in zip(widths, headers, strict=True):
        pdf.cell(width, 8, _clean(header), border="B")
    pdf.ln()
    pdf.set_font(FONT, size=9)
    for allocation in allocations:
        invoice = allocation.invoice
        cells = (
            invoice.number,
            f"{invoice.session.date_of_service:%m/%d/%Y}",
            invoice.provider.display_name[:34],
            invoice.provider.npi,
            invoice.session.cpt_code,
            format_cents(allocation.amount_cents),
        )
        for width, cell in zip(widths, cells, strict=True):
            pdf.cell(width, 7, _clean(cell))
        pdf.ln()
    pdf.set_font(FONT, "B", 10)
    pdf.cell(sum(widths[:-1]), 8, _clean(gettext("Total paid")), border="T")
    pdf.cell(widths[-1], 8, format_cents(sum(a.amount_cents for a in allocations)), border="T")
    pdf.ln(14)
    pdf.set_font(FONT, size=10)
    claims = claim_numbers_for(session_ids={a.invoice.session_id for a in allocations})
    if claims:  # P13: what the patient quotes to their plan, FSA or HSA
        numbers = sorted(set(claims.values()))
        text = ngettext("Insurance claim number: {numbers}.", "Insurance claim numbers: {numbers}.", len(numbers))
        pdf.multi_cell(0, 6, _clean(text.format(numbers=", ".join(numbers))), new_x="LMARGIN", new_y="NEXT")
    # Back to the left margin after each paragraph: the next one needs the page's whole width.
    pdf.multi_cell(0, 6, _clean(str(FSA_STATEMENT)), new_x="LMARGIN", new_y="NEXT")
    if payment.refunded_cents:
        refunded = gettext("Refunded to your card: {amount}.").format(amount=format_cents(payment.refunded_cents))
        pdf.multi_cell(0, 6, _clean(refunded), new_x="LMARGIN", new_y="NEXT")
    contact = " · ".join(c for c in (settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE) if c)
    if contact:
        pdf.multi_cell(
            0, 6, _clean(gettext("Questions about this receipt? Contact Alma: {contact}").format(contact=contact))
        )
    return bytes(pdf.output())


def receipts_page_url() -> str:
    """The public page where a patient asks for a new link to their receipts."""
    return f"{settings.SITE_URL}/pay/receipts/"


def receipt_email_send(*, payment_id: int) -> bool:
    """Email the patient that the payment went through, once. Discreet: no provider, no clinical words."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).select_related("patient").get(pk=payment_id)
        if payment.status != Payment.Status.SUCCEEDED or payment.receipt_emailed_at or not payment.patient.email:
            return False
        settled = settled_cents(payment)
        if settled == 0:
            return False  # everything it covered was already paid: it was refunded in full, there is no receipt
        # A fresh link to the receipt (the invoice email's link may have expired, and autopay patients never got
        # one); it goes through the phone check like any other.
        _, link_context = pay_link_email_context(patient=payment.patient, invoice=None)
        context = {
            **link_context,
            "receipts_url": receipts_page_url(),
            "amount": format_cents(settled),
            "refunded": format_cents(payment.amount_cents - settled) if settled < payment.amount_cents else "",
            "reference": payment.reference,
            "card": card_label(payment.card_brand, payment.card_last4),
            "paid_on": timezone.localtime(payment.succeeded_at or payment.created_at),
        }
        send_patient_email(
            to=payment.patient.email,
            subject=gettext_lazy("Your payment to Alma was received"),
            template="emails/payment_receipt",
            context=context,
            language=payment.patient.preferred_language,
        )
        payment.receipt_emailed_at = timezone.now()
        payment.save(update_fields=["receipt_emailed_at"])
        audit_record(actor=SYSTEM, action=AuditAction.PAYMENT_RECEIPT_EMAILED, obj=payment)
    return True


# Receipts later (issue 11): listed after verification, and a fresh link on request from the public page.
RECEIPTS_LISTED_FOR = timedelta(days=731)  # two years: longer than the 18 months an FSA/HSA claim may need
RECEIPTS_LISTED_MAX = 200
RECEIPT_LINKS_PER_ADDRESS = 3  # requests per address per hour, whether or not the address is on file
RECEIPT_LINKS_PER_NETWORK = 10  # requests per IPv4 address or IPv6 /64 per hour
RECEIPT_LINKS_WINDOW = timedelta(hours=1)
RECEIPT_LINK_REQUESTS_KEPT = timedelta(days=2)
PATIENTS_PER_ADDRESS_MAX = 10  # a family sharing one mailbox; a bound on the work one request can cause


def receipts_for(*, patient_id: int, now: datetime | None = None) -> list[Payment]:
    """The patient's receipts, newest first: succeeded payments of the last two years that paid something (not
    only refunded duplicates), each with `paid_cents`. One query whatever the number."""
    since = (now or timezone.now()) - RECEIPTS_LISTED_FOR
    return list(
        Payment.objects.filter(patient_id=patient_id, status=Payment.Status.SUCCEEDED, succeeded_at__gte=since)
        .annotate(
            paid_cents=Sum("allocations__amount_cents", filter=Q(allocations__state=PaymentAllocation.State.SETTLED))
        )
        .filter(paid_cents__gt=0)
        .only("id", "succeeded_at", "card_brand", "card_last4", "created_at", "refunded_cents")
        .order_by("-succeeded_at", "-id")[:RECEIPTS_LISTED_MAX]
    )


def normalize_address(raw: str) -> str:
    return raw.strip().lower()


def _address_digest(address: str) -> str:
    """A keyed digest: the limits count by address without storing an address nobody has on file."""
    return salted_hmac("alma.receipts-link.address", normalize_address(address)).hexdigest()


def _lock(key: str) -> None:
    """A transaction-scoped lock on a name, so concurrent requests for one address (or from one network) count one
    after another. SQLite (development) serializes writers on its own."""
    if connection.vendor == "postgresql":
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number])


def receipts_link_request(*, address: str, ip: str | None) -> bool:
    """Someone asked for a receipts link for `address`. False when a limit is reached (nothing is recorded or
    sent). Otherwise the request is recorded and its emails queued: one fresh link for each patient with that
    address, none for an unknown one. The caller answers the same in both cases, and does the same work."""
    digest = _address_digest(address)
    network = _network(ip)
    with transaction.atomic():
        # Always in the same order, so two requests never wait on each other's second lock.
        for key in sorted({f"receipts-address:{digest}", f"receipts-network:{network}"}):
            _lock(key)
        recent = ReceiptLinkRequest.objects.filter(created_at__gte=timezone.now() - RECEIPT_LINKS_WINDOW)
        if recent.filter(address_digest=digest).count() >= RECEIPT_LINKS_PER_ADDRESS:
            return False
        if network and recent.filter(network=network).count() >= RECEIPT_LINKS_PER_NETWORK:
            return False
        patient_ids = list(
            Patient.objects.filter(email__iexact=normalize_address(address))
            .order_by("pk")
            .values_list("pk", flat=True)[:PATIENTS_PER_ADDRESS_MAX]
        )
        request = ReceiptLinkRequest.objects.create(address_digest=digest, network=network, patient_ids=patient_ids)
        from payments.tasks import receipts_link_task  # here: payments.tasks imports this module

        enqueue_on_commit(receipts_link_task, request.pk)
    logger.info("receipts link request %s recorded", request.pk)
    return True


def receipts_link_send(*, request_id: int) -> int:
    """Email each patient of a request a fresh link to their receipts, once; returns how many were sent."""
    with transaction.atomic():
        request = ReceiptLinkRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.processed_at is not None:
            return 0
        sent = 0
        for patient in Patient.objects.filter(pk__in=request.patient_ids).exclude(email="").order_by("pk"):
            if _address_digest(patient.email) != request.address_digest:
                continue  # staff changed the address since: the link goes only to the address asked for
            _, context = pay_link_email_context(patient=patient, invoice=None)
            send_patient_email(
                to=patient.email,
                subject=gettext_lazy("Your link to your Alma receipts"),
                template="emails/receipts_link",
                context={**context, "receipts_url": receipts_page_url()},
                language=patient.preferred_language,
            )
            audit_record(actor=SYSTEM, action=AuditAction.RECEIPTS_LINK_EMAILED, obj=patient, request_id=request.pk)
            sent += 1
        request.processed_at = timezone.now()
        request.save(update_fields=["processed_at"])
    return sent


def receipts_link_requests_finish(*, cutoff: datetime) -> int:
    """Outbox, not hope: send the requests whose task was lost (created before `cutoff`), and forget old ones."""
    ReceiptLinkRequest.objects.filter(created_at__lt=timezone.now() - RECEIPT_LINK_REQUESTS_KEPT).delete()
    sent = 0
    pending = ReceiptLinkRequest.objects.filter(processed_at__isnull=True, created_at__lt=cutoff).order_by("id")
    for request_id in pending.values_list("id", flat=True)[:1000]:
        try:
            sent += receipts_link_send(request_id=request_id)
        except Exception:
            logger.exception("could not send the receipts link for request %s", request_id)
    return sent
