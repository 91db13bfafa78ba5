"""factory_boy factories for the billing domain."""

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from invoices.models import (
    Coverage,
    EapAuthorization,
    EligibilitySnapshot,
    Invoice,
    Patient,
    Practice,
    Provider,
    TherapySession,
)
from payments.models import AutopayAttempt, AutopayEnrollment, Payment, PaymentAllocation

T = TypeVar("T")


class ModelFactory(factory.django.DjangoModelFactory[T]):
    """A factory whose call mypy reads as the model it builds (`InvoiceFactory()` is an `Invoice`)."""

    class Meta:
        abstract = True

    if TYPE_CHECKING:
        # factory_boy builds through its metaclass; this only tells mypy what comes back.
        def __new__(cls, *args: Any, **kwargs: Any) -> T: ...  # type: ignore[misc]


class UserFactory(ModelFactory[Any]):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True


class PracticeFactory(ModelFactory[Practice]):
    class Meta:
        model = Practice

    name = factory.Sequence(lambda n: f"Practice {n}")


def _npi(n: int) -> str:
    return f"{1000000000 + n:010d}"


class ProviderFactory(ModelFactory[Provider]):
    class Meta:
        model = Provider

    user = factory.SubFactory(UserFactory)
    practice = factory.SubFactory(PracticeFactory)
    display_name = factory.Sequence(lambda n: f"Dr. Provider {n}")
    npi = factory.Sequence(_npi)


class PatientFactory(ModelFactory[Patient]):
    class Meta:
        model = Patient

    first_name = "Jordan"
    last_name = factory.Sequence(lambda n: f"Lee{n}")
    email = factory.Sequence(lambda n: f"patient{n}@example.com")
    phone = "+12025550143"


class CoverageFactory(ModelFactory[Coverage]):
    class Meta:
        model = Coverage

    patient = factory.SubFactory(PatientFactory)
    payer_name = "Blue Harbor Health PPO"
    member_id = factory.Sequence(lambda n: f"M{n:06d}")


class EligibilitySnapshotFactory(ModelFactory[EligibilitySnapshot]):
    class Meta:
        model = EligibilitySnapshot

    coverage = factory.SubFactory(CoverageFactory)
    checked_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))
    copay_cents = None
    coinsurance_bp = 2000
    deductible_remaining_cents = 0
    oop_max_remaining_cents = 500_000


class EapAuthorizationFactory(ModelFactory[EapAuthorization]):
    class Meta:
        model = EapAuthorization

    patient = factory.SubFactory(PatientFactory)
    program = EapAuthorization.Program.OPTUM_LWW
    authorization_code = factory.Sequence(lambda n: f"EAP{n:05d}")
    sessions_authorized = 3
    valid_from = factory.LazyFunction(lambda: date.today() - timedelta(days=30))
    valid_until = factory.LazyFunction(lambda: date.today() + timedelta(days=60))


class TherapySessionFactory(ModelFactory[TherapySession]):
    class Meta:
        model = TherapySession

    patient = factory.SubFactory(PatientFactory)
    provider = factory.SubFactory(ProviderFactory)
    date_of_service = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=1))
    cpt_code = "90837"
    allowed_amount_cents = 15_000


def insured_session(**kwargs: Any) -> TherapySession:
    """A scheduled insurance session for a patient whose plan has a completed check (20% coinsurance)."""
    terms = {k[len("plan_") :]: kwargs.pop(k) for k in list(kwargs) if k.startswith("plan_")}
    session = TherapySessionFactory(**kwargs)
    coverage = CoverageFactory(patient=session.patient)
    EligibilitySnapshotFactory(coverage=coverage, **terms)
    return session


class InvoiceFactory(ModelFactory[Invoice]):
    """An issued invoice without going through the service (for pages and queries)."""

    class Meta:
        model = Invoice

    session = factory.SubFactory(TherapySessionFactory, status=TherapySession.Status.COMPLETED)
    patient = factory.SelfAttribute("session.patient")
    provider = factory.SelfAttribute("session.provider")
    practice = factory.SelfAttribute("session.provider.practice")
    number = factory.Sequence(lambda n: f"INV-T{n:06d}")
    kind = Invoice.Kind.SELF_PAY
    amount_cents = 12_000
    calculation = factory.LazyAttribute(
        lambda o: {"method": "self_pay", "rate_cents": o.amount_cents, "amount_cents": o.amount_cents}
    )


class PaymentFactory(ModelFactory[Payment]):
    """A payment row as the state machine leaves it; pass `status` and the Stripe fields the test needs."""

    class Meta:
        model = Payment

    patient = factory.SubFactory(PatientFactory)
    amount_cents = 12_000
    attempt_key = factory.Sequence(lambda n: f"attempt-t{n:06d}")


class PaymentAllocationFactory(ModelFactory[PaymentAllocation]):
    """The share of one payment that goes to one invoice (the whole invoice unless told otherwise)."""

    class Meta:
        model = PaymentAllocation

    invoice = factory.SubFactory(InvoiceFactory)
    payment = factory.SubFactory(PaymentFactory, patient=factory.SelfAttribute("..invoice.patient"))
    amount_cents = factory.SelfAttribute("invoice.amount_cents")


class AutopayEnrollmentFactory(ModelFactory[AutopayEnrollment]):
    """A card saved for autopay without going through Stripe (for pages and scoping; charging needs a real card)."""

    class Meta:
        model = AutopayEnrollment

    patient = factory.SubFactory(PatientFactory)
    stripe_payment_method_id = factory.Sequence(lambda n: f"pm_t{n:06d}")
    card_brand = "visa"
    card_last4 = "4242"
    consent_text = "ok"


class AutopayAttemptFactory(ModelFactory[AutopayAttempt]):
    """The first scheduled charge of an invoice, due now."""

    class Meta:
        model = AutopayAttempt

    invoice = factory.SubFactory(InvoiceFactory)
    enrollment = factory.SubFactory(AutopayEnrollmentFactory, patient=factory.SelfAttribute("..invoice.patient"))
    number = 1
    scheduled_for = factory.LazyFunction(timezone.now)
