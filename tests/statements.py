"""Counting the SQL statements one piece of work runs.

`recorded()` collects the statements issued from the context it is entered in and from
the tasks started inside it (a request served in-process, the loaders it spawns), not
those of tasks started before it, such as the embedded job runner polling and sweeping
on its own schedule. A count therefore measures the work under test, however busy the
rest of the process is.
"""

from __future__ import annotations

import contextvars
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
