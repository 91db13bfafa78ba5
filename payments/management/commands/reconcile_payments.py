"""Ask Stripe about every payment still in flight (a lost webhook loses no payment). Safe to run any time."""

from typing import Any

from django.core.management.base import BaseCommand

from payments.reconcile import payments_reconcile


class Command(BaseCommand):
    help = "Settle or release payments whose Stripe webhook never arrived."

    def handle(self, *args: Any, **options: Any) -> None:
        summary = payments_reconcile()
        self.stdout.write(
            f"Checked {summary.checked} payment(s) in flight: {summary.succeeded} succeeded, {summary.failed} failed "
            f"or canceled, {summary.still_open} still waiting, {summary.errors} could not be checked. "
            f"Duplicate charges refunded: {summary.refunds}. Receipts sent: {summary.receipts}."
        )
