"""factory_boy factories for the billing domain."""

from datetime import date, timedelta
from typing import Any

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


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True


class PracticeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Practice

    name = factory.Sequence(lambda n: f"Practice {n}")


def _npi(n: int) -> str:
    return f"{1000000000 + n:010d}"


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider

    user = factory.SubFactory(UserFactory)
    practice = factory.SubFactory(PracticeFactory)
    display_name = factory.Sequence(lambda n: f"Dr. Provider {n}")
    npi = factory.Sequence(_npi)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    first_name = "Jordan"
    last_name = factory.Sequence(lambda n: f"Lee{n}")
    email = factory.Sequence(lambda n: f"patient{n}@example.com")
    phone = "+12025550143"


class CoverageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coverage

    patient = factory.SubFactory(PatientFactory)
    payer_name = "Blue Harbor Health PPO"
    member_id = factory.Sequence(lambda n: f"M{n:06d}")


class EligibilitySnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EligibilitySnapshot

    coverage = factory.SubFactory(CoverageFactory)
    checked_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))
    copay_cents = None
    coinsurance_bp = 2000
    deductible_remaining_cents = 0
    oop_max_remaining_cents = 500_000


class EapAuthorizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EapAuthorization

    patient = factory.SubFactory(PatientFactory)
    program = EapAuthorization.Program.OPTUM_LWW
    authorization_code = factory.Sequence(lambda n: f"EAP{n:05d}")
    sessions_authorized = 3
    valid_from = factory.LazyFunction(lambda: date.today() - timedelta(days=30))
    valid_until = factory.LazyFunction(lambda: date.today() + timedelta(days=60))


class TherapySessionFactory(factory.django.DjangoModelFactory):
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


class InvoiceFactory(factory.django.DjangoModelFactory):
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
