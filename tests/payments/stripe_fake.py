"""localstripe for tests: a stateful Stripe fake, driven through the real stripe SDK and our gateway; and a proxy
in front of it that holds the create call."""

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import stripe
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

GOOD_CARD = "4242424242424242"
DECLINED_AT_CHARGE = "4000000000000341"  # saves, then is declined when charged
DECLINED_AT_SETUP = "4000000000000002"
THREE_D_SECURE = "4000002500003155"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def localstripe_process() -> Iterator[str]:
    with localstripe_running() as (url, _):
        yield url


@contextmanager
def localstripe_running() -> Iterator[tuple[str, "subprocess.Popen[bytes]"]]:
    """A private localstripe process: its URL and the process (for fault tests that freeze or kill it)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "payments.localstripe_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{url}/v1/customers", auth=("sk_test_x", ""), timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def client() -> stripe.StripeClient:
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE})


def save_card(setup_intent_id: str, number: str) -> Any:
    """What Stripe.js confirmCardSetup does in the browser: confirm the SetupIntent with card data."""
    card = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    intent = client().v1.setup_intents.confirm(
        setup_intent_id,
        params={"payment_method_data": {"type": "card", "card": card}},  # type: ignore[arg-type]
    )
    if intent.status == "requires_action":  # the 3-D Secure card asks once when saved: "Complete authentication"
        intent = client().v1.setup_intents.confirm(setup_intent_id)
    return intent


def authenticate(payment_intent_id: str, *, success: bool) -> None:
    """What the 3-D Secure box does: complete or fail the card check."""
    secret = client().v1.payment_intents.retrieve(payment_intent_id).client_secret
    response = requests.post(
        f"{settings.STRIPE_API_BASE}/v1/payment_intents/{payment_intent_id}/_authenticate",
        params={"success": "true" if success else "false"},
        data=json.dumps({"key": settings.STRIPE_PUBLISHABLE_KEY, "client_secret": secret}),
        timeout=5,
    )
    response.raise_for_status()


def intents_for(customer_id: str) -> list[Any]:
    """A customer's PaymentIntents (localstripe cannot filter the list by customer)."""
    return [i for i in client().v1.payment_intents.list().data if i.customer == customer_id]


def signed_event(event: dict[str, Any], secret: str | None = None) -> tuple[bytes, str]:
    """A webhook body and its Stripe-Signature header, signed the way Stripe signs them."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    signed = f"{timestamp}.".encode() + payload
    signature = hmac.new((secret or settings.STRIPE_WEBHOOK_SECRET).encode(), signed, hashlib.sha256).hexdigest()
    return payload, f"t={timestamp},v1={signature}"


def event_for_intent(event_id: str, event_type: str, intent: Any) -> dict[str, Any]:
    obj = intent if isinstance(intent, dict) else intent.to_dict()
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}, "api_version": "2024-06-20"}


# --- a proxy that holds the create call, for workers killed (or Stripe slow) mid-charge ---------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


class StripeProxy:
    """Forwards every request to localstripe, one at a time (so whatever it has sent on is done at "Stripe" before
    a later request is looked at). `POST /v1/payment_intents` is held for `hold_seconds` first; `create_seen` is
    set when the first one arrives, `create_sent` once it has been sent on to localstripe."""

    def __init__(self, upstream: str, *, hold_seconds: float) -> None:
        self.upstream = upstream
        self.hold_seconds = hold_seconds
        self.create_seen = threading.Event()
        self.create_sent = threading.Event()
        self.creates = 0
        self.lines: list[str] = []
        self._order = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                with proxy._order:
                    proxy.lines.append(f"{self.command} {self.path}")
                    if self.command == "POST" and self.path.split("?")[0] == "/v1/payment_intents":
                        proxy.creates += 1
                        proxy.create_seen.set()
                        time.sleep(proxy.hold_seconds)  # the client may be dead by now; Stripe carries on
                    upstream = requests.request(
                        self.command, proxy.upstream + self.path, headers=headers, data=body, timeout=30
                    )
                    if proxy.create_seen.is_set():
                        proxy.create_sent.set()
                try:
                    self.send_response(upstream.status_code)
                    for key, value in upstream.headers.items():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(upstream.content)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(upstream.content)
                except OSError:  # BrokenPipeError, ConnectionResetError: the worker that asked was killed
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator["StripeProxy"]:
        thread = threading.Thread(target=self.server.serve_forever, name="stripe-proxy", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=10)
