"""Counting the SQL statements one piece of work runs.

`recorded()` collects the statements issued from the context it is entered in and from
the tasks started inside it (a request served in-process, the loaders it spawns), not
those of tasks started before it, such as the embedded job runner polling and sweeping
on its own schedule. A count therefore measures the work under test, however busy the
rest of the process is.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_recording: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "recording", default=None
)


def _record(
    connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    seen = _recording.get()
    if seen is not None:
        seen.append(statement)


@contextmanager
def recorded() -> Iterator[list[str]]:
    """The statements every engine runs on behalf of this context while it is open."""
    seen: list[str] = []
    token = _recording.set(seen)
    event.listen(Engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", _record)
        _recording.reset(token)


def queries(statements: list[str]) -> list[str]:
    """The statements that read or write data for the page, leaving out transaction
    control and the token check (cached for seconds, so a slow machine may see it
    again)."""
    return [
        statement
        for statement in statements
        if not statement.startswith("BEGIN") and not _NOT_THE_PAGE.search(statement)
    ]


_NOT_THE_PAGE = re.compile(r"\bFROM access_tokens\b")
