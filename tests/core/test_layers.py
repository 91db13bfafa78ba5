"""The layers (docs/architecture.md): invoices calls up only through hooks, and every hook is wired at start-up."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from invoices import hooks


def test_every_invoices_hook_is_registered_by_an_installed_app() -> None:
    """A missing registration would fail a patient's flow at run time; here it fails at start-up's test."""
    wired = [value for value in vars(hooks).values() if isinstance(value, hooks.Hook)]
    assert {hook.name for hook in wired} == {
        "invoice_announce",
        "invoice_voided",
        "pay_link_email_context",
        "pay_links_revoke",
        "phone_normalize",
        "claim_open",
    }
    for hook in wired:
        assert callable(hook.call), hook.name


def test_a_hook_nobody_registered_fails_loudly_with_its_name() -> None:
    orphan: hooks.Hook[hooks._Announce] = hooks.Hook("orphan")
    with pytest.raises(ImproperlyConfigured, match="orphan"):
        orphan.call(invoice_id=1)
