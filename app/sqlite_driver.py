"""SQLite for the async engine with one thread hop per statement.

aiosqlite runs each sqlite3 connection in a thread of its own and hands it every call
through a queue: SQLAlchemy's adapter makes four such calls per statement (open a cursor,
execute, fetch, close), and each costs a wake-up of the thread and then of the event loop,
which together were most of a simple request's time. Here a statement is one call that
executes it, reads every row and closes its cursor in the connection's thread; the cursor
SQLAlchemy holds answers from those rows without going back. Commit and rollback outside
a transaction (the pool's reset of a connection it gets back) do not make the trip.

Everything else is aiosqlite's own connection: the thread, the queue, connecting,
closing and stopping.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aiosqlite

# A cursor's description: seven items per column, as the DB-API describes it.
Description = tuple[tuple[Any, ...], ...] | None
# What a statement gave: its rows, description, row count and last row id.
Outcome = tuple[list[Any], Description, int, int | None]


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors run a statement in one call to its thread."""

    def cursor(self) -> StatementCursor:  # type: ignore[override]
        return StatementCursor(self)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()

    async def run(self, sql: str, parameters: Any, *, many: bool = False) -> Outcome:
        """Execute one statement in the connection's thread: its rows, description,
        row count and last row id."""
        # aiosqlite's queue to the connection's thread (untyped there).
        in_thread = cast(Callable[..., Awaitable[Outcome]], self._execute)
        return await in_thread(_execute, self._conn, sql, parameters, many)


def _execute(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> Outcome:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class StatementCursor:
    """What SQLAlchemy's adapter needs of an aiosqlite cursor, over rows already read."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> StatementCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> StatementCursor:
        outcome = await self._connection.run(sql, parameters)
        self._rows, self.description, self.rowcount, self.lastrowid = outcome
        return self

    async def executemany(self, sql: str, parameters: Any) -> StatementCursor:
        outcome = await self._connection.run(sql, parameters, many=True)
        self._rows, self.description, self.rowcount, self.lastrowid = outcome
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = size or self.arraysize
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchall(self) -> Sequence[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


def connect(path: str, **options: Any) -> Connection:
    """A connection to the database file at `path`; `options` go to `sqlite3.connect`.
    The event loop's thread may read whether a transaction is open (commit, rollback)."""

    def connector() -> sqlite3.Connection:
        opened: sqlite3.Connection = sqlite3.connect(path, check_same_thread=False, **options)
        return opened

    connection = Connection(connector, iter_chunk_size=64)
    connection._thread.daemon = True
    return connection
