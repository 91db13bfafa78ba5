"""Autopay charges (P6): schedule one for each new invoice of an enrolled patient, run what is due off-session, and
fall back to the emailed link on a decline. The schedule is `AutopayAttempt` rows (a beat sweep runs what is due);
a decline is retried on AUTOPAY_RETRY_DAYS before autopay stops for that invoice and patient and staff are told."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy, gettext_noop

from alma_billing.core.audit import SYSTEM, AuditAction, audit_record
from alma_billing.core.errors import ServiceError
from alma_billing.core.queue import enqueue
from invoices import services as invoice_services
from invoices.models import Invoice, Practice
from payments import services
from payments.autopay.emails import autopay_email_send
from payments.autopay.selectors import active_enrollment
from payments.gateways import stripe as gateway
from payments.models import AutopayAttempt, Payment
from payments.rules import card_label

logger = logging.getLogger(__name__)


def invoice_announce(*, invoice_id: int, invoice: Invoice | None = None) -> bool:
    """Tell the patient about a new invoice (P1, P6): the autopay notice if autopay applies, else the link email.
    Returns whether the link email went out. Registered as invoices' `invoice_announce` hook (payments/apps.py).

    `invoice`: the caller's copy, created or locked in the caller's open transaction with its patient and practice
    loaded (the issue task announces the invoice it just created): it is used as it is, not read and locked again."""
    if autopay_take_over(invoice_id=invoice_id, invoice=invoice):
        return False  # enrolled in autopay: the patient got the pre-charge notice instead of a link
    return invoice_services.invoice_email_send(invoice_id=invoice_id, invoice=invoice)


def autopay_scheduled_cancel(*, invoice_id: int, reason: str) -> int:
    """The invoice's scheduled automatic charges will not happen (e.g. it was voided). Returns how many stopped.
    Registered as invoices' `invoice_voided` hook; runs inside the caller's transaction."""
    return AutopayAttempt.objects.filter(invoice_id=invoice_id).cancel_scheduled(reason=reason)


def autopay_take_over(*, invoice_id: int, invoice: Invoice | None = None) -> bool:
    """For a new invoice of an enrolled patient whose practice offers autopay: tell them what will be charged and
    when, and schedule the charge. Returns False when autopay does not apply (the link email goes out instead).
    `invoice`: as for invoice_announce, already locked by the caller's transaction."""
    # No savepoint of its own: an error undoes the caller's transaction (or the savepoint it announces in).
    with transaction.atomic(savepoint=False):
        if invoice is None:
            invoice = (
                Invoice.objects.select_for_update(of=("self",)).select_related("patient", "practice").get(pk=invoice_id)
            )
        if invoice.status != Invoice.Status.OPEN or invoice.practice.autopay_policy == Practice.AutopayPolicy.OFF:
            return False
        enrollment = active_enrollment(patient_id=invoice.patient_id)
        if enrollment is None:
            return False
        if invoice.autopay_attempts.exists():
            return True  # already scheduled by an earlier run of this task
        when = invoice.issued_at + timedelta(days=settings.AUTOPAY_NOTICE_DAYS)
        attempt = AutopayAttempt.objects.create(invoice=invoice, enrollment=enrollment, number=1, scheduled_for=when)
        if invoice.patient.email:
            autopay_email_send(
                invoice,
                "emails/autopay_notice",
                gettext_lazy("Autopay: an upcoming charge from Alma"),
                card=card_label(enrollment.card_brand, enrollment.card_last4),
                when=when,
            )
            attempt.notice_sent_at = timezone.now()
            attempt.save(update_fields=["notice_sent_at"])
        invoice.emailed_at = timezone.now()
        invoice.save(update_fields=["emailed_at"])
        audit_record(actor=SYSTEM, action=AuditAction.AUTOPAY_SCHEDULED, obj=invoice, attempt_id=attempt.pk)
        if settings.AUTOPAY_NOTICE_DAYS == 0:
            transaction.on_commit(lambda: autopay_run_due_soon(invoice.patient_id))
    return True


def autopay_due() -> int:
    """Run every scheduled charge whose time has come. Returns how many ran."""
    due = AutopayAttempt.objects.filter(status=AutopayAttempt.Status.SCHEDULED, scheduled_for__lte=timezone.now())
    ran = 0
    for attempt_id in due.order_by("scheduled_for").values_list("id", flat=True)[:500]:
        try:
            autopay_attempt_run(attempt_id=attempt_id)
            ran += 1
        except Exception:  # one attempt's trouble (e.g. Stripe unreachable) must not stop the others; it stays due
            logger.exception("autopay attempt %s could not run; the next sweep tries again", attempt_id)
    return ran


def autopay_attempt_run(*, attempt_id: int) -> AutopayAttempt:
    """Charge one scheduled attempt, off-session. Run twice or concurrently, it charges once: the payment's
    attempt key comes from (invoice, attempt number), and the charge itself is locked and counted."""
    with transaction.atomic():
        attempt = (
            AutopayAttempt.objects.select_for_update(of=("self",))
            .select_related("invoice__practice", "enrollment")
            .get(pk=attempt_id)
        )
        if attempt.status != AutopayAttempt.Status.SCHEDULED:
            return attempt
        invoice, enrollment = attempt.invoice, attempt.enrollment
        if (
            attempt.payment_id
            and Payment.objects.filter(pk=attempt.payment_id, status=Payment.Status.SUCCEEDED).exists()
        ):
            _finish(attempt, AutopayAttempt.Status.SUCCEEDED, "")  # charged by an earlier run that died after
            return attempt
        stop = _stop_reason(attempt)
        if stop:
            _finish(attempt, AutopayAttempt.Status.CANCELED, stop)
            return attempt
    card = gateway.Card(
        payment_method_id=enrollment.stripe_payment_method_id,
        customer_id="",
        brand=enrollment.card_brand,
        last4=enrollment.card_last4,
        funding=enrollment.card_funding,
    )
    try:
        payment = services.payment_start(
            patient_id=invoice.patient_id,
            invoice_ids=[invoice.pk],
            expected_amount_cents=invoice.owed_cents,
            attempt_key=f"autopay-{invoice.pk}-{attempt.number}",
            card=card,
            actor=SYSTEM,
            source=Payment.Source.AUTOPAY,
            keep_card=True,
        )
    except ServiceError:
        return attempt  # the patient is paying this invoice right now; the next sweep looks again
    AutopayAttempt.objects.filter(pk=attempt.pk, payment__isnull=True).update(payment=payment)
    with transaction.atomic():
        # Autopay may have been turned off (or the practice's policy changed) while the invoice was being held.
        current = (
            AutopayAttempt.objects.select_for_update(of=("self",))
            .select_related("invoice__practice", "enrollment")
            .get(pk=attempt.pk)
        )
        reason = "" if current.status == AutopayAttempt.Status.SCHEDULED else gettext_noop("Autopay was turned off.")
        reason = reason or _stop_reason(current)
    if reason and payment.status == Payment.Status.CREATED and not payment.stripe_payment_intent_id:
        services.payment_abandon(
            payment_id=payment.pk, message=gettext_noop("Autopay was turned off before the charge.")
        )
        with transaction.atomic():
            current = AutopayAttempt.objects.select_for_update().get(pk=attempt.pk)
            if current.status == AutopayAttempt.Status.SCHEDULED:
                _finish(current, AutopayAttempt.Status.CANCELED, reason)
        return current
    payment = services.payment_charge(payment_id=payment.pk)
    if payment.status == Payment.Status.PROCESSING:
        # Off-session, a bank that wants the cardholder present (authentication_required) cannot be satisfied.
        payment = services.payment_cancel(payment_id=payment.pk)
        if payment.status != Payment.Status.SUCCEEDED:
            Payment.objects.filter(pk=payment.pk).update(
                failure_code="authentication_required",
                failure_message=gateway.decline_message("authentication_required"),
            )
            payment.refresh_from_db()
    with transaction.atomic():
        attempt = AutopayAttempt.objects.select_for_update().get(pk=attempt.pk)
        if attempt.status != AutopayAttempt.Status.SCHEDULED:
            return attempt
        if payment.status == Payment.Status.SUCCEEDED:
            _finish(attempt, AutopayAttempt.Status.SUCCEEDED, "")
        elif payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED):
            _fall_back(attempt, payment)
    return attempt


def _stop_reason(attempt: AutopayAttempt) -> str:
    """Why a scheduled charge must not happen now, or ""."""
    invoice = attempt.invoice
    if invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID):
        return gettext_noop("Paid another way or voided.")
    if attempt.enrollment.ended_at is not None:
        return gettext_noop("Autopay was turned off.")
    if invoice.practice.autopay_policy == Practice.AutopayPolicy.OFF:
        return gettext_noop("The practice no longer offers autopay.")
    return ""


def _finish(attempt: AutopayAttempt, status: str, message: str) -> None:
    attempt.status, attempt.failure_message, attempt.finished_at = status, message[:300], timezone.now()
    attempt.save(update_fields=["status", "failure_message", "finished_at"])


def _fall_back(attempt: AutopayAttempt, payment: Payment) -> None:
    """The charge failed: the patient gets the link and the reason; retry on schedule, then stop and say so."""
    _finish(attempt, AutopayAttempt.Status.FAILED, payment.failure_message)
    invoice = attempt.invoice
    retries = settings.AUTOPAY_RETRY_DAYS
    next_at = None
    if attempt.number <= len(retries):
        next_at = timezone.now() + timedelta(days=retries[attempt.number - 1])
        AutopayAttempt.objects.create(
            invoice=invoice,
            enrollment=attempt.enrollment,
            number=attempt.number + 1,
            scheduled_for=next_at,
            notice_sent_at=timezone.now(),
        )
    audit_record(
        actor=SYSTEM,
        action=AuditAction.AUTOPAY_FAILED if next_at else AuditAction.AUTOPAY_GAVE_UP,
        obj=invoice,
        attempt=attempt.number,
        payment_id=payment.pk,
        reason=payment.failure_code,
    )
    if invoice.patient.email:
        autopay_email_send(
            invoice,
            "emails/autopay_failed",
            gettext_lazy("Autopay didn't go through for your Alma invoice"),
            reason=lazy(gateway.failure_message_for, str)(payment.failure_code, payment.failure_message),
            next_at=next_at,
            card=card_label(attempt.enrollment.card_brand, attempt.enrollment.card_last4),
        )


def autopay_run_due_soon(patient_id: int) -> None:
    """Queue the patient's charges that are due now (enrolled with "pay what is open", or a notice period of 0)."""
    from payments.tasks import autopay_attempt_task  # here: payments.tasks imports autopay

    due = AutopayAttempt.objects.filter(
        invoice__patient_id=patient_id, status=AutopayAttempt.Status.SCHEDULED, scheduled_for__lte=timezone.now()
    )
    for attempt_id in due.values_list("id", flat=True):
        enqueue(autopay_attempt_task, attempt_id)  # a lost one is run by autopay_due_task
