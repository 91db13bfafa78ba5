"""audit_batch: the events of one transaction in one INSERT, and a rolled-back savepoint takes its events with it."""

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from alma_billing.core.audit import SYSTEM, Actor, AuditAction, audit_batch, audit_record
from alma_billing.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_batch_writes_its_events_in_order_with_the_same_fields(django_assert_num_queries):
    user = get_user_model().objects.create_user(username="ops", password="x")
    staff = Actor.staff(user, ip="10.0.0.7")
    with transaction.atomic(), django_assert_num_queries(1), audit_batch():  # one INSERT for both
        audit_record(actor=staff, action=AuditAction.INVOICE_VOIDED, obj=user, reason="duplicate")
        audit_record(actor=SYSTEM, action=AuditAction.INVOICE_EMAILED, obj=user, pay_link_id=3)
    events = list(AuditEvent.objects.order_by("id"))
    assert [(e.action, e.actor_id, e.actor_label, e.ip_address, e.data) for e in events] == [
        ("invoice.voided", user.pk, f"user:{user.pk}", "10.0.0.7", {"reason": "duplicate"}),
        ("invoice.emailed", None, "system", None, {"pay_link_id": 3}),
    ]
    assert all(e.object_type == "auth.user" and e.object_id == str(user.pk) for e in events)
    assert events[0].created_at <= events[1].created_at


def test_a_nested_batch_that_fails_drops_only_its_own_events():
    user = get_user_model().objects.create_user(username="ops", password="x")
    with transaction.atomic(), audit_batch():
        audit_record(actor=SYSTEM, action=AuditAction.INVOICE_ISSUED, obj=user)
        with pytest.raises(RuntimeError), transaction.atomic(), audit_batch():
            audit_record(actor=SYSTEM, action=AuditAction.INVOICE_EMAILED, obj=user)
            raise RuntimeError("the email failed")
        assert not AuditEvent.objects.exists()  # nothing written before the batch ends
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["invoice.issued"]
