"""client_ip behind a proxy: whatever X-Forwarded-For says, the answer is a valid address or None, never garbage."""

import ipaddress
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from alma_billing.core.http import client_ip


def _ip(xff: str | None, remote: str = "10.0.0.9", hops: int = 1) -> str | None:
    meta: dict[str, Any] = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    with override_settings(TRUSTED_PROXY_COUNT=hops):
        return client_ip(RequestFactory().get("/", **meta))


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("198.51.100.1, 203.0.113.5", "203.0.113.5"),  # the entry the one trusted proxy wrote
        ("203.0.113.5:5678", "203.0.113.5"),  # a port is stripped
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("[::1]:80", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("unknown", "10.0.0.9"),  # not an address: REMOTE_ADDR
        ("garbage", "10.0.0.9"),
        ("203.0.113.5\x00", "10.0.0.9"),
        ("fe80::1%eth0", "10.0.0.9"),  # a zone is not storable
        ("1" * 100_000, "10.0.0.9"),
        ("", "10.0.0.9"),
        (" , ,", "10.0.0.9"),
        ("999.1.1.1", "10.0.0.9"),
    ],
)
def test_a_forwarded_entry_that_is_not_a_bare_ip_is_never_returned(xff: str, expected: str) -> None:
    assert _ip(xff) == expected


def test_without_a_trusted_proxy_the_header_is_ignored() -> None:
    assert _ip("203.0.113.5", hops=0) == "10.0.0.9"


def test_a_bad_remote_addr_gives_none() -> None:
    assert _ip(None, remote="not-an-ip", hops=0) is None
    assert _ip("unknown", remote="") is None


@settings(max_examples=200, deadline=None)
@given(
    xff=st.one_of(
        st.text(max_size=200),
        st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=30)), max_size=5).map(", ".join),
        st.tuples(st.ip_addresses(v=4), st.integers(0, 99999)).map(lambda t: f"{t[0]}:{t[1]}"),
        st.tuples(st.ip_addresses(v=6), st.integers(0, 99999)).map(lambda t: f"[{t[0]}]:{t[1]}"),
    ),
    remote=st.one_of(st.ip_addresses().map(str), st.text(max_size=40)),
    hops=st.integers(0, 3),
)
def test_client_ip_is_always_a_valid_address_or_none(xff: str, remote: str, hops: int) -> None:
    address = _ip(xff, remote=remote, hops=hops)
    assert address is None or str(ipaddress.ip_address(address)) == address
