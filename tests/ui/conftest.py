"""A real headless Chromium driven by Playwright, signed in to a real scheduler.

Debian's `/usr/bin/chromium` is used (Playwright's own browser download cannot work
offline; `.ci/install-browser` installs it). Without it or Playwright the browser tests
are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import pool, start_server, start_worker
from tests.servers import ServerProcess
from tests.ui.bidi import Firefox, Page, launch

__all__ = ["pool", "start_server", "start_worker"]  # the e2e fixtures, used here too

CHROMIUM = os.environ.get("O11N_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: run .ci/install-browser)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for these tests (Playwright makes a fresh profile for it).
    Package-scoped: Playwright's sync API keeps an event loop running in this thread
    while it is open, and the asyncio tests that come after must find none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install playwright")
    if not shutil.which(CHROMIUM):
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (empty session storage) and page, 1440x900 like a laptop.
    Errors the page's scripts throw fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


def sign_in(page: Any, server: ServerProcess, token: str | None = None) -> None:
    """Open the dashboard and sign in with `token` (default: the admin's)."""
    page.goto(server.url + "/")
    page.get_by_label("API token").fill(token or server.token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who").filter(has_text="admin" if token is None else "").wait_for()


def screenshot(page: Any, name: str) -> Path:
    """Save the page as docs/screenshots/NAME.png for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


# Firefox, driven over WebDriver BiDi by tests/ui/bidi.py: Debian's firefox-esr speaks it
# natively, so neither geckodriver nor Playwright's patched Firefox is needed.
FIREFOX = os.environ.get("O11N_TEST_FIREFOX", "/usr/bin/firefox-esr")


@pytest.fixture(scope="package")
def firefox() -> Iterator[Firefox]:
    """One headless Firefox, on a fresh profile removed afterwards, for these tests."""
    if not shutil.which(FIREFOX):
        _unavailable(f"no Firefox at {FIREFOX}: apt-get install firefox-esr")
    with launch(FIREFOX) as browser:
        yield browser


@pytest.fixture
def firefox_page(firefox: Firefox) -> Iterator[Page]:
    """A Firefox tab in a fresh user context (empty session storage), 1440x900.
    Errors the page's scripts throw fail the test."""
    with firefox.page(width=1440, height=900) as page:
        yield page
        errors = page.errors()
    assert not errors, f"the page threw: {errors}"
