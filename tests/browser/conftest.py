"""Browser fixtures: Debian chromium driven by Playwright's sync API, with a phone-sized page per test.

The live server runs in a thread of this process, so the browser talks to the same database and settings as the
test (including the per-test OUTBOX_DIR where the local SMS backend writes its messages).
"""

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.needs import need
from tests.payments.conftest import localstripe_url, stripe_api  # noqa: F401  (localstripe for the paying tests)

# Playwright's sync API keeps an event loop in this thread; the ORM calls made by the tests are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-US",
}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need("Chromium", Path(path).exists(), "Debian chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium_executable: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_phone_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """new_phone_context(**overrides) opens a fresh phone-sized context (own cookies); all close after the test."""
    contexts: list[BrowserContext] = []

    def make(**overrides: Any) -> BrowserContext:
        context = browser.new_context(**{**PHONE, **overrides})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def phone_page(new_phone_context: Callable[..., BrowserContext]) -> Page:
    return new_phone_context().new_page()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Any:
    """screenshot(page, "step") saves test-artifacts/screenshots/<test name>-<step>.png (full page)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(page: Page, step: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def browser_log(phone_page: Page) -> Iterator[list[str]]:
    """Console messages, page errors and failed requests of phone_page; printed (shown on failure) after the test."""
    log: list[str] = []
    phone_page.on("console", lambda message: log.append(f"console.{message.type}: {message.text}"))
    phone_page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
    phone_page.on("requestfailed", lambda request: log.append(f"requestfailed: {request.url} {request.failure}"))
    yield log
    print("\n".join(["browser log:", *log]))
