"""Idempotent demo data: one practice per autopay policy, providers, and patients in every billing situation."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from alma_billing.core.audit import SYSTEM
from alma_billing.core.errors import ServiceError
from alma_billing.core.staff_otp import AUTHENTICATOR_NAME, staff_recovery_codes_set
from claims.samples import demo_835, demo_claim_numbers
from invoices import services
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

User = get_user_model()

# Local demo logins only: the command refuses to run when DEBUG is off.
OPS_LOGIN = ("ops", "ops-demo-password")
PROVIDERS = [
    # username, name, NPI, practice, autopay policy
    ("dr.rivera", "Dr. Maya Rivera", "1234567893", "Harbor Counseling", Practice.AutopayPolicy.OFF),
    ("dr.chen", "Dr. Daniel Chen", "1245319599", "Northside Wellness", Practice.AutopayPolicy.OPTIONAL),
    ("dr.okafor", "Dr. Ada Okafor", "1316995921", "Lakeview Practice", Practice.AutopayPolicy.REQUIRED),
]
PROVIDER_PASSWORD = "provider-demo-password"
# The admin needs a second factor. Demo logins get these one-time recovery codes (each works once; every seed_demo,
# so every `make run`, restores the full set) and an authenticator with a published key (RFC 6238's test key).
DEMO_RECOVERY_CODES = ["demo1", "demo2", "demo3", "demo4", "demo5"]
DEMO_TOTP_KEY_HEX = "3132333435363738393031323334353637383930"
DEMO_TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


class Command(BaseCommand):
    help = "Create demo practices, providers, patients, sessions and invoices (safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("seed_demo creates demo logins; it only runs with DEBUG on.")
        verbose = options["verbosity"] >= 1
        if verbose:
            self.stderr.write("Creating demo practices, providers and patients…")
        with transaction.atomic():
            providers = self._staff()
            # Seeded once: on a later day the relative dates would otherwise make new sessions.
            seeded = Patient.objects.filter(email="jordan.lee@example.com").exists()
            sessions = [] if seeded else self._patients(providers)
        failed = []
        for session in sessions:  # completing outside the seed transaction lets on_commit issue the invoices
            try:
                services.session_complete(session_id=session.pk, actor=SYSTEM)
            except ServiceError as error:
                self.stderr.write(f"Session #{session.pk} not completed: {error.message}")
                failed.append(session.pk)
        if verbose:
            self._report()
        self._demo_remittance(verbose)
        if failed:
            raise CommandError(f"{len(failed)} demo session(s) could not be completed: ids {failed}.")

    def _demo_remittance(self, verbose: bool) -> None:
        """P13: an 835 for the demo claims (written each run: claim numbers come from this database's ids)."""
        numbers = demo_claim_numbers()
        if numbers is None:
            return
        path = settings.VAR_DIR / "demo.835"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(demo_835(numbers))
        if not verbose:
            return
        self.stdout.write(
            f"  Sample remittance (X12 835) for the demo claims: DEBUG=1 .venv/bin/python manage.py "
            f"import_remittance {path}"
        )
        self.stdout.write(
            "    (Jordan adjusted up, Sam's first visit reduced by a credit or refunded if paid, Sam's second denied,"
            " one unmatched)"
        )

    def _staff(self) -> list[Provider]:
        ops, created = User.objects.get_or_create(
            username=OPS_LOGIN[0], defaults={"is_staff": True, "is_superuser": True, "email": "ops@alma.invalid"}
        )
        if created:
            ops.set_password(OPS_LOGIN[1])
            ops.save()
        providers_group = Group.objects.get(name="Providers")
        providers = []
        for username, name, npi, practice_name, policy in PROVIDERS:
            practice, _ = Practice.objects.get_or_create(name=practice_name, defaults={"autopay_policy": policy})
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            if created:
                user.set_password(PROVIDER_PASSWORD)
                user.save()
                user.groups.add(providers_group)
            provider, _ = Provider.objects.get_or_create(
                user=user, defaults={"practice": practice, "display_name": name, "npi": npi}
            )
            providers.append(provider)
        for username in [OPS_LOGIN[0], *(row[0] for row in PROVIDERS)]:
            self._second_factor(User.objects.get(username=username))
        return providers

    def _second_factor(self, user: Any) -> None:
        staff_recovery_codes_set(user=user, codes=DEMO_RECOVERY_CODES)
        TOTPDevice.objects.get_or_create(
            user=user, name=AUTHENTICATOR_NAME, defaults={"key": DEMO_TOTP_KEY_HEX, "confirmed": True}
        )

    def _patients(self, providers: list[Provider]) -> list[TherapySession]:
        rivera, chen, okafor = providers
        today = timezone.localdate()
        sessions: list[TherapySession] = []

        def patient(first: str, last: str, phone: str) -> Patient:
            email = f"{first.lower()}.{last.lower()}@example.com"
            obj, _ = Patient.objects.get_or_create(
                email=email, defaults={"first_name": first, "last_name": last, "phone": phone}
            )
            return obj

        def plan(p: Patient, **terms: Any) -> None:
            coverage, _ = Coverage.objects.get_or_create(
                patient=p, member_id=f"M{p.pk:06d}", defaults={"payer_name": "Blue Harbor Health PPO"}
            )
            if not coverage.eligibility_checks.exists():
                EligibilitySnapshot.objects.create(
                    coverage=coverage,
                    checked_at=timezone.now() - timedelta(days=90),
                    raw_payload={"demo": True},
                    **terms,
                )

        def session(p: Patient, provider: Provider, days_ago: int, **fields: Any) -> None:
            obj, _ = TherapySession.objects.get_or_create(
                patient=p,
                provider=provider,
                date_of_service=today - timedelta(days=days_ago),
                defaults={"cpt_code": "90837", **fields},
            )
            sessions.append(obj)

        # One open invoice: 20% coinsurance with part of the deductible left.
        jordan = patient("Jordan", "Lee", "+12025550143")
        plan(jordan, coinsurance_bp=2000, deductible_remaining_cents=5_000, oop_max_remaining_cents=300_000)
        session(jordan, rivera, 6, allowed_amount_cents=15_000)

        # Several open invoices across two practices, one of them self-pay.
        sam = patient("Sam", "Patel", "+16175550100")
        plan(sam, copay_cents=3_000, deductible_remaining_cents=0, oop_max_remaining_cents=150_000)
        session(sam, chen, 40, allowed_amount_cents=14_000)
        session(sam, chen, 26, allowed_amount_cents=14_000)
        session(sam, okafor, 12, billing_type=TherapySession.BillingType.SELF_PAY, self_pay_rate_cents=17_500)

        # Nothing owed: an Optum EAP session within its authorization.
        alex = patient("Alex", "Kim", "+14155550132")
        auth, _ = EapAuthorization.objects.get_or_create(
            program=EapAuthorization.Program.OPTUM_LWW,
            authorization_code="EAP-DEMO-1",
            defaults={
                "patient": alex,
                "sessions_authorized": 6,
                "valid_from": today - timedelta(days=60),
                "valid_until": today + timedelta(days=120),
            },
        )
        session(alex, rivera, 3, billing_type=TherapySession.BillingType.EAP, eap_authorization=auth)

        # Flagged for ops: insurance session with no eligibility check on file.
        taylor = patient("Taylor", "Brooks", "+13125550188")
        Coverage.objects.get_or_create(patient=taylor, member_id="M-NOCHECK", defaults={"payer_name": "Prairie Mutual"})
        session(taylor, okafor, 2, allowed_amount_cents=16_000)
        return [s for s in sessions if s.status == TherapySession.Status.SCHEDULED]

    def _report(self) -> None:
        open_count = Invoice.objects.filter(status=Invoice.Status.OPEN).count()
        flagged = TherapySession.objects.filter(billing_outcome=TherapySession.Outcome.NEEDS_ATTENTION).count()
        base = settings.SITE_URL
        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo data ready: {open_count} open invoices, {flagged} session(s) flagged for ops."))
        out(f"  Dev outbox (emails with pay links): {base}/dev/outbox/")
        out(f"  Admin: {base}/admin/")
        out(f"    ops user:  {OPS_LOGIN[0]} / {OPS_LOGIN[1]}")
        for username, name, *_ in PROVIDERS:
            out(f"    provider:  {username} / {PROVIDER_PASSWORD}  ({name})")
        codes = " ".join(DEMO_RECOVERY_CODES)
        out(f"    second factor (the admin asks for one): a recovery code, each works once: {codes}")
        out(f"      (seed_demo restores them), or an authenticator app with the demo secret {DEMO_TOTP_SECRET}")
        out("  Patient phones: Jordan Lee (202) 555-0143 (one invoice), Sam Patel (617) 555-0100 (several),")
        out("                  Alex Kim (415) 555-0132 (EAP, nothing owed), Taylor Brooks (312) 555-0188 (flagged)")
