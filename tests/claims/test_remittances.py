"""P13: X12 835 remittances settle claims: more is billed, less is refunded, equal is confirmed, denials go to a
person; files are applied all or nothing and importing one twice changes nothing."""

from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone, translation

from alma_billing.core.audit import SYSTEM
from alma_billing.core.models import AuditEvent
from claims.models import Claim, ClaimPayment, Remittance
from claims.samples import Clp, build_835
from invoices import services
from invoices.explain import explanation_lines
from invoices.models import Invoice, TherapySession
from payments.models import Refund
from tests.claims.flows import ESTIMATE, reversal, run, run_failing
from tests.factories import insured_session
from tests.payments import stripe_fake
from tests.payments.flows import pay, verified_client
from tests.verification.helpers import link_for, verify

pytestmark = pytest.mark.django_db


def test_p13_the_plan_says_more_bills_an_adjustment_invoice_linked_to_the_original(
    billed, tmp_path, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    remittance = build_835(
        [Clp(claim.claim_number, responsibility_cents=5_000, adjustments=[("PR", "1", 2_000), ("PR", "2", 3_000)])]
    )
    with django_capture_on_commit_callbacks(execute=True):
        out = run(tmp_path, remittance)

    assert "1 claims matched, 1 adjusted up, 0 reduced, 0 refunded, 0 confirmed" in out
    adjustment = Invoice.objects.get(kind=Invoice.Kind.ADJUSTMENT)
    assert adjustment.adjusts == original and adjustment.session_id == original.session_id
    assert adjustment.amount_cents == 2_000 and adjustment.status == Invoice.Status.OPEN
    original.refresh_from_db()
    assert original.amount_cents == ESTIMATE  # money stays read-only
    with translation.override("en"):
        why = explanation_lines(adjustment.calculation)
    day = f"{timezone.localtime(original.issued_at):%B} {timezone.localtime(original.issued_at).day}"
    assert why[0].startswith(f"Estimated on {day}") and why[0].endswith(": $30.00.")
    assert why[1:] == [
        f"Your plan's decision on claim {claim.claim_number}: you owe $50.00 for this visit.",
        "Deductible: $20.00.",
        "Coinsurance: $30.00.",
        "Difference: $20.00.",
    ]
    assert [m.subject for m in mail.outbox] == ["You have a new invoice from Alma"]  # emailed like any invoice
    claim.refresh_from_db()
    assert claim.status == Claim.Status.ADJUSTED and claim.plan_responsibility_cents == 5_000
    assert AuditEvent.objects.filter(action="claim.adjusted_up", object_id=str(claim.pk)).exists()
    line = ClaimPayment.objects.get()
    assert line.adjustments == [
        {"group": "PR", "reason": "1", "amount_cents": 2_000},
        {"group": "PR", "reason": "2", "amount_cents": 3_000},
    ]
    assert (line.charge_cents, line.paid_cents, line.payer_claim_number) == (20_000, 12_000, "PCN0001")


def test_p13_the_plan_agrees_and_the_claim_is_confirmed(billed, tmp_path) -> None:
    claim, original = billed
    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=ESTIMATE)]))
    assert "1 claims matched, 0 adjusted up, 0 reduced, 0 refunded, 1 confirmed" in out
    claim.refresh_from_db()
    assert claim.status == Claim.Status.CONFIRMED and claim.decided_at is not None
    assert Invoice.objects.count() == 1
    day = f"{timezone.localtime(claim.decided_at):%b} {timezone.localtime(claim.decided_at).day}"
    summary = verified_client(original).get("/pay/invoices/").content.decode()
    issued = f"{timezone.localtime(original.issued_at):%b} {timezone.localtime(original.issued_at).day}"
    assert f"Claim number {claim.claim_number}" in summary
    assert f"Estimated on {issued}" in summary and f"Confirmed by your plan on {day}" in summary


def test_p13_the_plan_says_less_after_the_patient_paid_refunds_the_card(
    billed, tmp_path, stripe_api, django_capture_on_commit_callbacks
) -> None:
    claim, original = billed
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(verified_client(original), "all")["status"] == "succeeded"
    original.refresh_from_db()
    assert original.status == Invoice.Status.PAID
    mail.outbox.clear()

    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))

    assert "1 claims matched, 0 adjusted up, 0 reduced, 1 refunded" in out
    refund = Refund.objects.get()
    assert refund.amount_cents == 2_000 and refund.reason == Refund.Reason.CLAIM and refund.invoice == original
    at_stripe = stripe_fake.client().v1.refunds.retrieve(str(refund.stripe_refund_id))
    assert at_stripe.amount == 2_000
    original.refresh_from_db()
    assert original.status == Invoice.Status.PAID and original.amount_cents == ESTIMATE
    assert ClaimPayment.objects.get().refund == refund
    assert [m.subject for m in mail.outbox] == ["A refund from Alma"]
    assert "$20.00" in mail.outbox[0].body

    # The same decision again (the file resent): nothing more goes back.
    assert "1 already imported" in run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))
    assert Refund.objects.count() == 1


def test_p13_less_on_an_open_invoice_is_reduced_by_a_credit_and_the_issued_amount_stays(billed, tmp_path) -> None:
    claim, original = billed
    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=1_000)]))
    assert "1 reduced, 0 refunded" in out and "0 need a person" in out
    original.refresh_from_db()
    assert original.amount_cents == ESTIMATE and original.status == Invoice.Status.OPEN
    assert original.credited_cents == 2_000 and original.owed_cents == 1_000
    claim.refresh_from_db()
    assert claim.status == Claim.Status.ADJUSTED and not claim.attention


def test_p13_a_denied_claim_bills_nothing_and_is_flagged_with_the_plans_reasons(billed, tmp_path) -> None:
    claim, original = billed
    denial = Clp(
        claim.claim_number, status="4", paid_cents=0, responsibility_cents=0, adjustments=[("CO", "50", 20_000)]
    )
    out = run(tmp_path, build_835([denial]))
    assert "1 denied" in out
    claim.refresh_from_db()
    assert claim.status == Claim.Status.DENIED and "CO-50" in claim.attention
    assert Invoice.objects.count() == 1 and not Refund.objects.exists()


def test_p13_a_zero_dollar_estimate_the_plan_bills_gets_an_adjustment_invoice(
    tmp_path, django_capture_on_commit_callbacks
) -> None:
    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_complete(session_id=session.pk, actor=SYSTEM)
    claim = Claim.objects.get(session=session)
    with django_capture_on_commit_callbacks(execute=True):
        run(
            tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=2_500, adjustments=[("PR", "3", 2_500)])])
        )
    adjustment = Invoice.objects.get(session=session)
    assert adjustment.kind == Invoice.Kind.ADJUSTMENT and adjustment.adjusts is None
    assert adjustment.amount_cents == 2_500


def open_owed(claim: Claim) -> int:
    """What the patient still owes for the claim: open invoices less the plan's credits."""
    return sum(i.owed_cents for i in Invoice.objects.filter(session=claim.session, status=Invoice.Status.OPEN))


def test_p13_a_reversal_undoes_the_open_adjustment_and_the_correction_applies(billed, tmp_path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=5_000)], trace="EFT1"))
    out = run(tmp_path, build_835([reversal(claim, 5_000)], trace="EFT2"))
    assert "1 reversed" in out
    adjustment = Invoice.objects.get(kind=Invoice.Kind.ADJUSTMENT)
    assert adjustment.status == Invoice.Status.VOID and open_owed(claim) == ESTIMATE
    claim.refresh_from_db()
    assert claim.status == Claim.Status.REVERSED and claim.plan_responsibility_cents is None
    correction = Clp(claim.claim_number, responsibility_cents=4_000, payer_claim_number="PCN0002")
    run(tmp_path, build_835([correction], trace="EFT3"))
    claim.refresh_from_db()
    assert claim.status == Claim.Status.ADJUSTED and open_owed(claim) == 4_000


@pytest.mark.parametrize(
    "order",
    [
        ("original", "reversal", "correction"),
        ("original", "correction", "reversal"),
        ("reversal", "original", "correction"),
        ("correction", "reversal", "original"),
    ],
)
def test_p13_reversal_and_correction_end_the_same_whatever_order_the_files_arrive_in(
    billed, tmp_path, order: tuple[str, ...]
) -> None:
    claim, _ = billed
    files = {
        "original": build_835([Clp(claim.claim_number, responsibility_cents=5_000)], trace="EFT1"),
        "reversal": build_835([reversal(claim, 5_000)], trace="EFT2"),
        "correction": build_835(
            [Clp(claim.claim_number, responsibility_cents=4_000, payer_claim_number="PCN0002")], trace="EFT3"
        ),
    }
    for name in order:
        run(tmp_path, files[name], name=f"{name}.835")
    assert open_owed(claim) == 4_000
    claim.refresh_from_db()
    assert claim.plan_responsibility_cents == 4_000 and not claim.attention


def test_p13_a_lower_second_decision_reduces_the_open_adjustment_by_void_and_reissue(billed, tmp_path) -> None:
    claim, original = billed
    run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=5_000)], trace="EFT1"))
    out = run(
        tmp_path,
        build_835([Clp(claim.claim_number, responsibility_cents=4_000, payer_claim_number="P2")], trace="EFT2"),
    )
    assert "1 reduced" in out
    first, second = Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT).order_by("id")
    assert first.status == Invoice.Status.VOID and first.amount_cents == 2_000
    assert second.status == Invoice.Status.OPEN and second.amount_cents == 1_000
    assert "Billed so far $30.00" in second.calculation["note"] or "Estimated $30.00" in second.calculation["note"]
    original.refresh_from_db()
    assert original.amount_cents == ESTIMATE and original.status == Invoice.Status.OPEN


def test_p13_unknown_claims_are_counted_unmatched_and_kept(billed, tmp_path) -> None:
    claim, _ = billed
    out = run(tmp_path, build_835([Clp("NOTOURS0001"), Clp(claim.claim_number, responsibility_cents=ESTIMATE)]))
    assert "1 claims matched" in out and "1 unmatched" in out and "1 confirmed" in out
    assert ClaimPayment.objects.get(claim=None).outcome == ClaimPayment.Outcome.UNMATCHED


def test_p13_the_same_file_twice_changes_nothing_the_second_time(
    billed, tmp_path, django_capture_on_commit_callbacks
) -> None:
    claim, _ = billed
    remittance = build_835([Clp(claim.claim_number, responsibility_cents=5_000)])
    with django_capture_on_commit_callbacks(execute=True):
        run(tmp_path, remittance)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        out = run(tmp_path, remittance)
    assert "0 claims matched, 0 adjusted up" in out and "1 already imported" in out
    assert Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT).count() == 1 and not mail.outbox
    assert Remittance.objects.count() == 1 and ClaimPayment.objects.count() == 1


def test_p13_dry_run_says_what_would_happen_and_changes_nothing(billed, tmp_path) -> None:
    claim, _ = billed
    out = run(tmp_path, build_835([Clp(claim.claim_number, responsibility_cents=5_000)]), "--dry-run")
    assert "dry run" in out and "1 adjusted up" in out
    assert not Remittance.objects.exists() and not ClaimPayment.objects.exists()
    assert Invoice.objects.count() == 1
    claim.refresh_from_db()
    assert claim.status == Claim.Status.SUBMITTED


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (lambda text: text.replace("SE*", "SE*4", 1), "SE segment: SE count is 4"),
        (lambda text: text.replace("*1*200.00*", "*X*200.00*", 1), "CLP segment (line 13)"),
        (lambda text: text.replace("*1*200.00*", "*1*2OO.00*", 1), "CLP03"),
        (lambda text: text.replace("GE*1*1", "GE*2*1"), "GE segment"),
        (lambda text: text.replace("PER*BL*CLAIMS DEPARTMENT*TE*8005551212~\n", ""), "PER"),
        (lambda text: text[:40], "ISA"),
        (lambda text: text.replace("ST*835", "ST*837"), "ST"),
    ],
)
def test_p13_a_malformed_file_exits_non_zero_names_the_segment_and_changes_nothing(
    billed, tmp_path, broken: Any, named: str
) -> None:
    claim, _ = billed
    good = build_835([Clp(claim.claim_number, responsibility_cents=5_000), Clp("NOTOURS0001")])
    error = run_failing(tmp_path, broken(good))
    assert named in error and "nothing changed" in error
    assert not Remittance.objects.exists() and not ClaimPayment.objects.exists()
    assert Invoice.objects.count() == 1
    claim.refresh_from_db()
    assert claim.status == Claim.Status.SUBMITTED


def test_p13_a_session_never_billed_to_a_plan_is_unmatched(tmp_path) -> None:
    assert not TherapySession.objects.exists()
    assert "1 unmatched" in run(tmp_path, build_835([Clp("ALMA00000001")]))


def test_p13_the_demo_remittance_shows_each_outcome_on_the_seeded_claims(
    settings, tmp_path, stripe_api, django_capture_on_commit_callbacks, capsys
) -> None:
    settings.DEBUG, settings.VAR_DIR = True, tmp_path
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")
    call_command(
        "seed_demo"
    )  # in a test the invoices (and claims) come at the end of the block above; again is a no-op
    assert f"import_remittance {tmp_path / 'demo.835'}" in capsys.readouterr().out
    sam_first = Invoice.objects.filter(patient__email="sam.patel@example.com", kind=Invoice.Kind.INSURANCE).earliest(
        "session__date_of_service"
    )
    with django_capture_on_commit_callbacks(execute=True):
        client = Client()
        verify(client, link_for(sam_first), phone="(617) 555-0100")
        assert pay(client, f"invoice:{sam_first.number}")["status"] == "succeeded"

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_remittance", str(tmp_path / "demo.835"), stdout=out)
    assert "3 claims matched, 1 adjusted up, 0 reduced, 1 refunded, 0 confirmed, 1 denied, 0 reversed, 1 unmatched" in (
        out.getvalue()
    )
    assert Refund.objects.get().amount_cents == 1_000


def test_p13_ops_upload_a_remittance_in_the_admin_and_see_its_lines(billed) -> None:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.staff import staff_login

    claim, _ = billed
    ops = Client()
    staff_login(ops, get_user_model().objects.create_superuser("ops-835", "ops@example.com", "pw"))
    text = build_835([Clp(claim.claim_number, responsibility_cents=ESTIMATE)])

    bad = SimpleUploadedFile("bad.835", text.replace("SE*", "SE*9", 1).encode())
    page = ops.post("/admin/claims/remittance/import/", {"file": bad}, follow=True).content.decode()
    assert "not imported, nothing changed" in page and "SE segment" in page and not Remittance.objects.exists()

    good = SimpleUploadedFile("era.835", text.encode())
    page = ops.post("/admin/claims/remittance/import/", {"file": good}, follow=True).content.decode()
    assert "1 claims matched" in page and "1 confirmed" in page
    remittance = Remittance.objects.get()
    page = ops.get(f"/admin/claims/remittance/{remittance.pk}/change/").content.decode()
    assert claim.claim_number in page and "EFT0001" in page
    assert "Import a remittance (835)" in ops.get("/admin/claims/remittance/").content.decode()


def test_p13_the_ops_dashboard_counts_claims_for_a_person(billed, tmp_path) -> None:
    from django.contrib.auth import get_user_model

    from tests.staff import staff_login

    claim, _ = billed
    run(tmp_path, build_835([Clp(claim.claim_number, status="4", paid_cents=0, responsibility_cents=0)]))
    ops = Client()
    staff_login(ops, get_user_model().objects.create_superuser("ops-dash", "ops@example.com", "pw"))
    assert "1 claim(s) for a person" in ops.get("/admin/dashboard/").content.decode()
    listed = ops.get("/admin/claims/claim/?attention__isempty=0").content.decode()
    assert claim.claim_number in listed


@pytest.mark.django_db(transaction=True)
def test_p13_the_same_file_imported_twice_at_once_settles_once(postgres: None) -> None:
    """Two ops import one file at the same moment on PostgreSQL: one adjustment invoice, one line, no error."""
    import threading

    from django.db import connection

    from claims.services import remittance_import

    session = insured_session(allowed_amount_cents=15_000, plan_coinsurance_bp=2000)
    services.session_complete(session_id=session.pk, actor=SYSTEM)
    services.invoice_issue(session_id=session.pk)
    claim = Claim.objects.get(session=session)
    text = build_835([Clp(claim.claim_number, responsibility_cents=5_000)])
    barrier = threading.Barrier(2)
    results: list[object] = []

    def import_it() -> None:
        try:
            barrier.wait()
            results.append(remittance_import(raw_text=text))
        finally:
            connection.close()

    threads = [threading.Thread(target=import_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted((r.adjusted_up, r.already_imported) for r in results) == [(0, 1), (1, 0)]  # type: ignore[attr-defined]
    assert Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT).count() == 1 and ClaimPayment.objects.count() == 1


def test_p13_the_demo_remittance_reduces_sams_open_first_visit_by_a_credit(
    settings, tmp_path, django_capture_on_commit_callbacks
) -> None:
    settings.DEBUG, settings.VAR_DIR = True, tmp_path
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # writes demo.835 now that the claims exist
    out = StringIO()
    call_command("import_remittance", str(tmp_path / "demo.835"), stdout=out)
    assert "3 claims matched, 1 adjusted up, 1 reduced, 0 refunded, 0 confirmed, 1 denied, 0 reversed, 1 unmatched" in (
        out.getvalue()
    )
    sam_first = Invoice.objects.filter(patient__email="sam.patel@example.com", kind=Invoice.Kind.INSURANCE).earliest(
        "session__date_of_service"
    )
    assert sam_first.owed_cents == sam_first.amount_cents - 1_000 and sam_first.credited_cents == 1_000
