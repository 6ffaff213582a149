"""GraphiQL works with no network beyond the server: Chromium, allowed to reach 127.0.0.1
only, opens GET /graphql, gets the editor, runs a query as the signed-in user and shows
its answer, having tried no other host and logged no error."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Page

from tests import browser_support
from tests.browser_support import BrowserPage
from tests.live_server import LiveServer

browser = browser_support.browser
browser_page = browser_support.browser_page
browser_server = browser_support.browser_server

VIEWER_QUERY = "{ viewer { user { username } } }"
ADMIN_ANSWER = {"data": {"viewer": {"user": {"username": "admin"}}}}
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE_EDITOR = ".graphiql-response .CodeMirror"
WAIT_MS = 30_000


async def open_graphiql(page: Page, server: LiveServer) -> None:
    await page.goto(f"{server.url}/graphql")
    await page.wait_for_selector(QUERY_EDITOR, timeout=WAIT_MS)


async def type_into(page: Page, editor: str, text: str) -> None:
    """Replace what a GraphiQL editor (CodeMirror) holds, as an edit of the user's."""
    await page.locator(editor).evaluate(
        "(element, text) => element.CodeMirror.setValue(text)", text
    )


async def run_and_read_answer(page: Page) -> Any:
    await page.click(".graphiql-execute-button")
    answer = await page.wait_for_function(
        """(selector) => {
            const text = document.querySelector(selector)?.CodeMirror.getValue() ?? "";
            return text.trim().startsWith("{") ? text : null;
        }""",
        arg=RESPONSE_EDITOR,
        timeout=WAIT_MS,
    )
    return json.loads(await answer.json_value())


def assert_stayed_on_the_server(browser_page: BrowserPage) -> None:
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


async def test_graphiql_runs_a_query_signed_in_by_the_session_cookie(
    browser_page: BrowserPage, browser_server: LiveServer
) -> None:
    page = browser_page.page
    await page.goto(f"{browser_server.url}/sign-in?next=/graphql")
    await page.fill("input[name=token]", browser_server.admin_token)
    await page.click("text=Sign in with the token")
    await page.wait_for_url(f"{browser_server.url}/graphql", timeout=WAIT_MS)
    await page.wait_for_selector(QUERY_EDITOR, timeout=WAIT_MS)

    await type_into(page, QUERY_EDITOR, VIEWER_QUERY)

    # The POST carries the cookie and, from the CSRF cookie, the header that lets it in.
    assert await run_and_read_answer(page) == ADMIN_ANSWER
    assert_stayed_on_the_server(browser_page)


async def test_graphiql_runs_a_query_with_a_token_from_the_headers_editor(
    browser_page: BrowserPage, browser_server: LiveServer
) -> None:
    page = browser_page.page
    await open_graphiql(page, browser_server)
    await type_into(page, QUERY_EDITOR, VIEWER_QUERY)
    await page.click("button[data-name=headers]")
    await type_into(
        page, HEADERS_EDITOR, json.dumps({"Authorization": f"Bearer {browser_server.admin_token}"})
    )

    assert await run_and_read_answer(page) == ADMIN_ANSWER
    assert_stayed_on_the_server(browser_page)


async def test_graphiql_without_credentials_asks_as_anonymous(
    browser_page: BrowserPage, browser_server: LiveServer
) -> None:
    page = browser_page.page
    await open_graphiql(page, browser_server)
    # The dialogs style themselves with <style> elements, which the page's policy admits.
    for dialog in ("Open settings dialog", "Open short keys dialog"):
        await page.click(f"[aria-label='{dialog}']")
        await page.wait_for_selector("[role=dialog]", timeout=WAIT_MS)
        await page.keyboard.press("Escape")
        await page.wait_for_selector("[role=dialog]", state="detached", timeout=WAIT_MS)
    await type_into(page, QUERY_EDITOR, VIEWER_QUERY)

    assert await run_and_read_answer(page) == {"data": {"viewer": None}}
    assert_stayed_on_the_server(browser_page)
