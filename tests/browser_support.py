"""Browser tests: the system's Chromium (the Debian package), driven by Playwright, against
a live `modelreg serve`.

Chromium runs headless with no network of its own (no background, component or sync
traffic) and a fresh profile; it is started once per test session, whichever modules use
it. Each test gets a `BrowserPage`: a new context in which every request for anything
but 127.0.0.1 is aborted and recorded, and every console error and uncaught page error
is recorded, so a test asserts that the page needed nothing but the server.

A test module takes the fixtures by naming them at module level:

    from tests import browser_support

    browser = browser_support.browser
    browser_page = browser_support.browser_page
    browser_server = browser_support.browser_server
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Route,
    async_playwright,
)

from tests.live_server import LiveServer, copy_sqlite, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGUMENTS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK_HOST = "127.0.0.1"


def chromium_path() -> str:
    """The system's Chromium; the test is skipped, saying why, when it is missing."""
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.skip("Chromium is not installed: install the Debian package 'chromium'")
    return path


@dataclass
class _SharedBrowser:
    """The one Chromium of the session, shared by the modules that take the fixture."""

    playwright: Playwright | None = None
    browser: Browser | None = None
    users: int = 0

    async def acquire(self) -> Browser:
        if self.browser is None:
            self.playwright = await async_playwright().start()
            # launch() gives Chromium a fresh user-data-dir of its own, removed on close.
            self.browser = await self.playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGUMENTS
            )
        self.users += 1
        return self.browser

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.browser is not None and self.playwright is not None:
            await self.browser.close()
            await self.playwright.stop()
            self.browser = self.playwright = None


_shared_browser = _SharedBrowser()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    yield await _shared_browser.acquire()
    await _shared_browser.release()


@dataclass
class BrowserPage:
    """A page in a context of its own, with what it tried beyond the server."""

    page: Page
    context: BrowserContext
    blocked_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
async def browser_page(browser: Browser) -> AsyncIterator[BrowserPage]:
    context = await browser.new_context()
    recorded = BrowserPage(page=await context.new_page(), context=context)

    async def only_loopback(route: Route) -> None:
        url = route.request.url
        if urllib.parse.urlsplit(url).hostname == LOOPBACK_HOST:
            await route.continue_()
        else:
            recorded.blocked_requests.append(url)
            await route.abort("blockedbyclient")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            recorded.console_errors.append(message.text)

    def on_page_error(error: Error) -> None:
        recorded.console_errors.append(f"uncaught: {error.message}")

    await context.route("**/*", only_loopback)
    recorded.page.on("console", on_console)
    recorded.page.on("pageerror", on_page_error)
    try:
        yield recorded
    finally:
        await context.close()


@pytest.fixture(scope="module")
def browser_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[LiveServer]:
    """A `modelreg serve` on a fresh SQLite database (what the browser sees does not
    depend on the database: one is enough)."""
    workdir = tmp_path_factory.mktemp("browser-server")
    with live_server(workdir, copy_sqlite(sqlite_template, workdir)) as running:
        yield running
