"""Ask Stripe about every payment still in flight (a lost webhook loses no payment). Safe to run any time.

The summary goes to stdout (nothing with -v0); exit status 1 when a payment could not be checked or newly needs a
person, so cron and job runners notice.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from payments.reconcile import ReconcileSummary, payments_reconcile


class Command(BaseCommand):
    help = "Settle or release payments whose Stripe webhook never arrived."

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] >= 1:
            self.stderr.write("Asking Stripe about every payment still in flight…")
        summary = payments_reconcile()
        if options["verbosity"] >= 1:
            self.stdout.write(self._summary(summary))
        if not summary.ok:
            # What to do is on the ops dashboard.
            raise CommandError(
                f"{summary.errors} payment(s) could not be checked and {summary.flagged} newly need a person: "
                "see 'Payments that need a person' on /admin/dashboard/."
            )

    @staticmethod
    def _summary(summary: ReconcileSummary) -> str:
        return (
            f"Checked {summary.checked} payment(s) in flight: {summary.succeeded} succeeded, {summary.failed} failed "
            f"or canceled, {summary.still_open} still waiting, {summary.errors} could not be checked. "
            f"Unknown at Stripe: {summary.unknown_at_stripe}. Newly flagged for a person: {summary.flagged}. "
            f"Duplicate charges refunded: {summary.refunds}. Receipts sent: {summary.receipts}. "
            f"Cards detached: {summary.cards_detached}."
        )
