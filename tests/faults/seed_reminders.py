"""Seed N patients, each with one open invoice issued 3 days before --as-of (so each is due one reminder that day).

Run in a subprocess against the database in DATABASE_URL:
    python -m tests.faults.seed_reminders --patients 12 --as-of 2026-11-26
"""

import argparse
import os
from datetime import date, datetime, time, timedelta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alma_billing.settings_test")
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from invoices.models import Invoice
    from tests.factories import InvoiceFactory, PatientFactory

    issued_at = timezone.make_aware(datetime.combine(args.as_of, time(9, 0))) - timedelta(days=3)
    with transaction.atomic():
        for n in range(args.patients):
            patient = PatientFactory(email=f"fault-patient-{n + 1:02d}@example.com")
            invoice = InvoiceFactory(session__patient=patient, amount_cents=7_000 + n)
            Invoice.objects.filter(pk=invoice.pk).update(issued_at=issued_at)
    print(f"seeded {args.patients} patients")


if __name__ == "__main__":
    main()
