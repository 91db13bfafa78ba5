"""Strings that carry meaning are names (issue 13): audit actions, model statuses in templates, `{% url %}` paths.

These pin the structure so it stays: a new literal fails here, not in a review."""

import ast
import re
from pathlib import Path

import pytest
from django.template import engines
from django.urls import reverse

from alma_billing.core.audit import AuditAction
from payments.models import Payment

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ["alma_billing", "invoices", "verification", "payments", "claims"]
TEMPLATES = ROOT / "templates"


def _app_sources() -> list[Path]:
    return [p for pkg in APP_PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts]


def test_audit_action_values_are_the_strings_stored_rows_already_hold() -> None:
    """The enum's values are what the audit trail, its admin filter and its CSV export show: they never change."""
    values = [action.value for action in AuditAction]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+", value) for value in values)
    assert AuditAction.PAYMENT_SUCCEEDED == "payment.succeeded"
    assert AuditAction.RECORD_CHANGED == "record.changed"
    assert AuditAction.STAFF_SECOND_FACTOR_FAILED == "staff.second_factor_failed"
    assert AuditAction.PAY_LINKS_REVOKED == "pay_links.revoked"


# audit_record, the login-attempt helper, and the ORM calls that write or look up AuditEvent rows by action.
AUDIT_WRITES_AND_QUERIES = {"audit_record", "_record_attempt", "create", "filter", "exclude", "get"}


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def test_every_audit_call_names_its_action_from_the_enum() -> None:
    """No free text: `audit_record(action=...)` takes an `AuditAction` member (or a variable holding one)."""
    offenders = []
    for path in _app_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _called(node) not in AUDIT_WRITES_AND_QUERIES:
                continue
            values = [keyword.value for keyword in node.keywords if keyword.arg and keyword.arg.startswith("action")]
            if _called(node) == "_record_attempt":
                values += node.args[:1]
            offenders += [
                f"{path.relative_to(ROOT)}:{value.lineno}"
                for value in values
                if isinstance(value, ast.Constant | ast.JoinedStr | ast.List | ast.Tuple | ast.Set)
            ]
    assert offenders == []


def test_templates_link_to_patient_pages_by_url_name_not_by_literal_path() -> None:
    """One named exception: base.html's language form, which the error pages extend; a 500 page must render even
    when reversing a URL is what failed (a broken urlconf), so it keeps its literal path."""
    literal = re.compile(r"""["']/pay/""")
    offenders = {
        str(path.relative_to(TEMPLATES))
        for path in TEMPLATES.rglob("*.html")
        if literal.search(path.read_text("utf-8"))
    }
    assert offenders <= {"base.html"}
    assert literal.findall((TEMPLATES / "base.html").read_text("utf-8")) == ['"/pay/']


def test_templates_compare_statuses_with_the_model_enum_not_a_literal() -> None:
    literal = re.compile(r"""\.(status|kind|state|outcome|autopay_policy)\s*[!=]=\s*["']""")
    offenders = [
        str(path.relative_to(ROOT)) for path in TEMPLATES.rglob("*.html") if literal.search(path.read_text("utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("status", "shown"),
    [("succeeded", "paid"), ("failed", "not paid"), ("canceled", "not paid"), ("processing", "waiting")],
)
def test_an_enum_comparison_in_a_template_reads_the_stored_status(status: str, shown: str) -> None:
    """A row read from the database holds a plain string; the template's enum member compares equal to it."""
    template = engines["django"].from_string(
        "{% if payment.status == payment.Status.SUCCEEDED %}paid"
        "{% elif payment.status == payment.Status.FAILED or payment.status == payment.Status.CANCELED %}not paid"
        "{% else %}waiting{% endif %}"
    )
    assert template.render({"payment": Payment(status=status)}) == shown


def test_url_names_give_the_paths_the_templates_had() -> None:
    """{% url %} must produce the very paths the literal links had (bookmarks, tests and the JS rely on them)."""
    assert reverse("pay-summary") == "/pay/invoices/"
    assert reverse("pay-details") == "/pay/invoices/details/"
    assert reverse("pay-checkout") == "/pay/checkout/"
    assert reverse("pay-code") == "/pay/code/"
    assert reverse("pay-code-resend") == "/pay/code/resend/"
    assert reverse("pay-autopay") == "/pay/autopay/"
    assert reverse("pay-autopay-enroll") == "/pay/autopay/enroll/"
    assert reverse("pay-autopay-end") == "/pay/autopay/end/"
    assert reverse("pay-language") == "/pay/language/"
    assert reverse("pay-sign-out") == "/pay/sign-out/"
    assert reverse("pay-result", args=[7]) == "/pay/payments/7/"
    assert reverse("pay-receipt", args=[7]) == "/pay/payments/7/receipt.pdf"
