"""Autopay enrollment (P6, P7): save a card with the patient's consent, never an FSA/HSA/HRA card; turn it off."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from alma_billing.core.audit import Actor, AuditAction, audit_record
from alma_billing.core.errors import ServiceError
from invoices.models import Invoice, Patient
from payments import services
from payments.autopay.charges import _run_due_soon, _scheduled_cancel
from payments.autopay.selectors import autopay_practices
from payments.gateways import stripe as gateway
from payments.models import AutopayAttempt, AutopayEnrollment
from payments.rules import CONSENT_VERSION, benefit_card_reason, consent_text

BENEFIT_REFUSED = gettext_lazy(
    "This looks like an FSA, HSA or HRA card ({why}). These cards can pay your invoices, but they can't be used for "
    "autopay. You can pay your open invoices with it now, or enroll a different credit or debit card."
)
NO_PRACTICE = gettext_lazy("None of your providers' practices offer autopay, so there is nothing to enroll in.")


def autopay_enroll(
    *, patient_id: int, card: gateway.Card, declared_benefit_card: bool, pay_open_now: bool, ip: str | None
) -> AutopayEnrollment:
    practices = autopay_practices(patient_id=patient_id)
    why = benefit_card_reason(card=card, declared=declared_benefit_card)
    if why:
        services.card_forget_later(payment_method_id=card.payment_method_id)
        audit_record(
            actor=Actor.patient(patient_id, ip=ip),
            action=AuditAction.AUTOPAY_BENEFIT_CARD_REFUSED,
            obj=Patient.objects.get(pk=patient_id),
            why=why,
        )
        raise ServiceError(BENEFIT_REFUSED.format(why=gettext(why)), code="benefit_card")
    if not practices:
        services.card_forget_later(payment_method_id=card.payment_method_id)
        raise ServiceError(NO_PRACTICE, code="not_offered")
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        previous = AutopayEnrollment.objects.select_for_update().filter(patient=patient, ended_at__isnull=True).first()
        if previous is not None and previous.stripe_payment_method_id == card.payment_method_id:
            return previous  # the same card again (e.g. a replayed request): nothing to change
        if previous is not None:
            previous.ended_at = timezone.now()
            previous.save(update_fields=["ended_at"])
            old_card = previous.stripe_payment_method_id
            services.card_forget_later(payment_method_id=old_card)
        enrollment = AutopayEnrollment.objects.create(
            patient=patient,
            stripe_payment_method_id=card.payment_method_id,
            card_brand=card.brand,
            card_last4=card.last4,
            card_funding=card.funding,
            consent_text=consent_text(practices=practices),
            consent_version=CONSENT_VERSION,
            consent_language=translation.get_language() or settings.LANGUAGE_CODE,
            consent_ip=ip,
        )
        if previous is not None:  # charges still to come move to the new card
            AutopayAttempt.objects.filter(enrollment=previous, status=AutopayAttempt.Status.SCHEDULED).update(
                enrollment=enrollment
            )
        audit_record(
            actor=Actor.patient(patient_id, ip=ip),
            action=AuditAction.AUTOPAY_ENROLLED,
            obj=enrollment,
            replaced=previous.pk if previous else None,
            pay_open_now=pay_open_now,
        )
        if pay_open_now:
            now = timezone.now()
            for invoice in Invoice.objects.filter(
                patient=patient, status=Invoice.Status.OPEN, practice__in=practices
            ).exclude(autopay_attempts__status=AutopayAttempt.Status.SCHEDULED):
                number = invoice.autopay_attempts.count() + 1
                AutopayAttempt.objects.create(
                    invoice=invoice, enrollment=enrollment, number=number, scheduled_for=now, notice_sent_at=now
                )
            transaction.on_commit(lambda: _run_due_soon(patient_id))
    return enrollment


def autopay_end(*, patient_id: int, actor: Actor) -> bool:
    with transaction.atomic():
        enrollment = (
            AutopayEnrollment.objects.select_for_update().filter(patient_id=patient_id, ended_at__isnull=True).first()
        )
        if enrollment is None:
            return False
        enrollment.ended_at = timezone.now()
        enrollment.save(update_fields=["ended_at"])
        _scheduled_cancel(
            AutopayAttempt.objects.filter(enrollment=enrollment), reason=gettext_noop("Autopay was turned off.")
        )
        audit_record(actor=actor, action=AuditAction.AUTOPAY_ENDED, obj=enrollment)
        card = enrollment.stripe_payment_method_id
        services.card_forget_later(payment_method_id=card)
    return True
