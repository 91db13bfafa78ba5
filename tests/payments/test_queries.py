"""The verified pages run a fixed number of SQL queries, whatever the number of open invoices (DESIGN.md targets).

One patient's invoices are added in steps (1, 10, then 100 open) and each page is counted after each step. Paid
invoices with a succeeded payment (Recent payments) and one invoice held by a processing payment (Payments in
progress) are there from the start, each from a different provider, so a lazy foreign key would show up as a
repeated query. On a mismatch the captured SQL of every size is printed.
"""

import datetime
import itertools
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from invoices.models import Invoice
from payments.models import Payment, PaymentAllocation
from tests.factories import InvoiceFactory, PaymentAllocationFactory, PaymentFactory
from tests.verification.helpers import link_for, verify

SIZES = (1, 10, 100)
PAGES = ("/pay/invoices/", "/pay/invoices/details/")
_serial = itertools.count(1)


def _invoice(patient: Any, days_ago: int, amount_cents: int, status: str = Invoice.Status.OPEN) -> Invoice:
    return InvoiceFactory(
        session__patient=patient,
        session__date_of_service=timezone.localdate() - datetime.timedelta(days=days_ago),
        amount_cents=amount_cents,
        status=status,
    )


def _payment(patient: Any, invoices: list[Invoice], status: str, state: str) -> Payment:
    n = next(_serial)
    payment = PaymentFactory(
        patient=patient,
        amount_cents=sum(i.amount_cents for i in invoices),
        status=status,
        attempt_key=f"query-count-{n}",
        stripe_payment_intent_id=f"pi_query_count_{n}",
        card_brand="visa",
        card_last4="4242",
        succeeded_at=timezone.now() if status == Payment.Status.SUCCEEDED else None,
    )
    for invoice in invoices:
        PaymentAllocationFactory(payment=payment, invoice=invoice, state=state)
    return payment


def _history(patient: Any) -> None:
    """Two succeeded payments over three paid invoices, and one invoice held by a payment still processing."""
    paid = [_invoice(patient, 400 + d, 9_000 + d, Invoice.Status.PAID) for d in range(3)]
    _payment(patient, paid[:2], Payment.Status.SUCCEEDED, PaymentAllocation.State.SETTLED)
    _payment(patient, paid[2:], Payment.Status.SUCCEEDED, PaymentAllocation.State.SETTLED)
    held = _invoice(patient, 300, 7_500, Invoice.Status.PROCESSING)
    _payment(patient, [held], Payment.Status.PROCESSING, PaymentAllocation.State.PENDING)


def _count(client: Client, url: str) -> tuple[int, list[str], str]:
    client.get(url)  # warm-up, so every size is measured in the same state (not the first request after the code)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    return len(captured), [q["sql"] for q in captured.captured_queries], response.content.decode()


def _shape(sql: str) -> str:
    """A query with its literals blanked, to tell which statement repeats."""
    return re.sub(r"'[^']*'|\d+", "?", sql)


def _report(url: str, runs: dict[int, list[str]]) -> str:
    lines = [f"{url}: queries per number of open invoices: { {n: len(sql) for n, sql in runs.items()} }"]
    for n, statements in runs.items():
        lines.append(f"--- {n} open invoice(s), {len(statements)} queries")
        lines.extend(f"  {i:3}: {sql}" for i, sql in enumerate(statements, 1))
    smallest, largest = runs[min(runs)], runs[max(runs)]
    repeated = {
        shape: largest_count
        for shape in {_shape(s) for s in largest}
        if (largest_count := sum(_shape(s) == shape for s in largest)) > sum(_shape(s) == shape for s in smallest)
    }
    lines.append("--- statements that repeat more with more invoices:")
    lines.extend(f"  x{count}: {shape}" for shape, count in repeated.items())
    return "\n".join(lines)


@pytest.mark.django_db
def test_pay_pages_run_the_same_queries_for_1_10_and_100_open_invoices(patient: Any) -> None:
    _history(patient)
    first = _invoice(patient, 200, 10_000)
    client = Client()
    verify(client, link_for(first))

    counts: dict[str, dict[int, int]] = {url: {} for url in PAGES}
    statements: dict[str, dict[int, list[str]]] = {url: {} for url in PAGES}
    made = 1
    for size in SIZES:
        for n in range(made, size):
            _invoice(patient, 199 - n, 10_000 + n)
        made = size
        assert Invoice.objects.filter(patient=patient, status=Invoice.Status.OPEN).count() == size
        for url in PAGES:
            count, sql, page = _count(client, url)
            counts[url][size] = count
            statements[url][size] = sql
            assert page.count('class="card"') >= size, "the page did not list every open invoice"
        summary = _count(client, "/pay/invoices/")[2]
        assert "Recent payments" in summary and "Payments in progress" in summary

    for url in PAGES:
        if len(set(counts[url].values())) != 1:
            print(_report(url, statements[url]))
    assert counts == {url: {size: counts[url][SIZES[0]] for size in SIZES} for url in PAGES}, counts
