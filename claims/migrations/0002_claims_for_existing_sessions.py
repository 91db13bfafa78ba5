"""Every insurance session billed before claims existed gets its claim (P13)."""

from django.db import migrations


def open_claims(apps, schema_editor):
    TherapySession = apps.get_model("invoices", "TherapySession")
    Claim = apps.get_model("claims", "Claim")
    billed = TherapySession.objects.filter(billing_outcome__in=["invoiced", "no_charge"], claim__isnull=True)
    sessions = billed.filter(billing_type="insurance") | billed.filter(invoice__kind="insurance")
    Claim.objects.bulk_create(
        [Claim(session_id=pk, claim_number=f"ALMA{pk:08d}") for pk in sessions.distinct().values_list("pk", flat=True)],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [("claims", "0001_claim"), ("invoices", "0005_reminder_in_doubt")]

    operations = [migrations.RunPython(open_claims, migrations.RunPython.noop)]
