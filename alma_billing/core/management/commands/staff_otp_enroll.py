"""Enroll a staff user's second factor: prints the authenticator URI and one-time recovery codes, once."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp import user_has_device

from alma_billing.core.audit import Actor
from alma_billing.core.staff_otp import staff_otp_enroll


class Command(BaseCommand):
    help = "Give a staff user an authenticator (TOTP) device and one-time recovery codes; prints them once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true", help="replace the devices the user already has")
        parser.add_argument("--recovery-codes", type=int, default=10, help="how many recovery codes (default 10)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] < 1:
            # The secret and recovery codes are shown once: enrolling without printing them would lose them.
            raise CommandError("staff_otp_enroll prints the new secret once; run it without -v0. Nothing changed.")
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist as exc:
            raise CommandError(f"No user named {options['username']!r}.") from exc
        if not user.is_staff:
            raise CommandError(f"User {user.pk} is not staff; only staff sign in to the admin.")
        if user_has_device(user, confirmed=None) and not options["replace"]:
            raise CommandError(
                f"User {user.pk} already has a second factor. Use --replace to issue new ones "
                "(the old authenticator and recovery codes stop working)."
            )
        enrollment = staff_otp_enroll(
            user=user,
            actor=Actor(label="manage.py staff_otp_enroll"),
            recovery_codes=options["recovery_codes"],
        )
        out = self.stdout.write
        out(
            self.style.SUCCESS(
                f"Second factor enrolled for {user.get_username()}. Hand this over privately; it is not shown again."
            )
        )
        out(f"  Authenticator app: scan or open  {enrollment.config_url}")
        out(f"  (or type the secret by hand: {enrollment.secret_base32})")
        out("  One-time recovery codes (each works once; keep them offline):")
        for code in enrollment.recovery_codes:
            out(f"    {code}")
