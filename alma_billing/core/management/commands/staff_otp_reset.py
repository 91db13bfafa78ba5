"""Remove a staff user's second-factor devices (a lost phone): they cannot sign in until enrolled again."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from alma_billing.core.audit import Actor
from alma_billing.core.staff_otp import staff_otp_reset


class Command(BaseCommand):
    help = "Remove every second-factor device of a staff user; then enroll again with staff_otp_enroll."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist as exc:
            raise CommandError(f"No user named {options['username']!r}.") from exc
        removed = staff_otp_reset(user=user, actor=Actor(label="manage.py staff_otp_reset"))
        if options["verbosity"] < 1:
            return
        self.stdout.write(
            f"Removed {removed} device(s) of {user.get_username()}; their admin sessions end at the next page. "
            f"Enroll again: python manage.py staff_otp_enroll {user.get_username()}"
        )
