"""Descriptions: Markdown written by people, stored with the HTML it renders to.

- A description is at most `validation.MAX_DESCRIPTION_LENGTH` characters; a longer one
  is refused at every door (`validation.description`).
- Its HTML is rendered once, when the description is written, and stored beside it
  (`description_html`); reads hand the stored HTML out and never render.
- Rendering is CommonMark with raw HTML turned off: any tag in a description comes out
  escaped, and markdown-it's link check keeps javascript:, vbscript: and file: URLs from
  becoming links.
- It runs in one dedicated worker thread, so the event loop keeps answering while
  markdown-it works, and concurrent writes queue for one core instead of taking all.
- A description longer than the limit (written before there was one) is shown as
  escaped preformatted text: markdown-it's time grows with the length, this does not.
"""

from __future__ import annotations

import asyncio
import html
from concurrent.futures import ThreadPoolExecutor

from markdown_it import MarkdownIt

from app.services.validation import MAX_DESCRIPTION_LENGTH

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="description-renderer")


def to_html(text: str) -> str:
    """The safe HTML of a description (blocking: markdown-it runs in the caller's thread)."""
    if len(text) > MAX_DESCRIPTION_LENGTH:
        return f"<pre>{html.escape(text)}</pre>\n"
    markup: str = _MARKDOWN.render(text)
    return markup


async def rendered(text: str | None) -> str | None:
    """The HTML to store with a description being written, rendered off the event loop."""
    if text is None:
        return None
    return await asyncio.get_running_loop().run_in_executor(_RENDERER, to_html, text)
