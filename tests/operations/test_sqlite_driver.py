"""SQLite through `app.sqlite_driver`: a statement costs one call into the connection's
thread, and SQLAlchemy reads from its cursors what sqlite3 reported (rows, counts, new
ids, errors), so transactions keep their meaning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from app import sqlite_driver
from app.db import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.engine.begin() as connection:
        await connection.execute(
            sa.text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        )
    yield database
    await database.dispose()


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function a connection ran in its thread, in order."""
    calls: list[str] = []
    # aiosqlite's queue to the connection's thread (untyped there).
    run_in_thread = cast(Callable[..., Awaitable[Any]], sqlite_driver.Connection._execute)

    async def counted(self: sqlite_driver.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await run_in_thread(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite_driver.Connection, "_execute", counted)
    return calls


async def test_a_transaction_of_three_statements_makes_five_trips(
    database: Database, thread_calls: list[str]
) -> None:
    async with database.session() as session:  # connects the pool's first connection
        await session.execute(sa.text("SELECT 1"))
    thread_calls.clear()

    async with database.session() as session:
        await session.execute(sa.text("INSERT INTO item (name) VALUES ('a')"))
        await session.execute(sa.text("UPDATE item SET name = 'b' WHERE name = 'a'"))
        names = (await session.execute(sa.text("SELECT name FROM item"))).scalars().all()

    assert names == ["b"]
    # BEGIN IMMEDIATE, the three statements, COMMIT; the pool's reset of the connection
    # it gets back (a rollback outside any transaction) stays in the event loop.
    assert thread_calls == ["_execute"] * 4 + ["commit"]


async def test_cursors_report_rows_counts_and_new_ids(database: Database) -> None:
    async with database.engine.begin() as connection:
        inserted = await connection.execute(sa.text("INSERT INTO item (name) VALUES ('x')"))
        assert inserted.lastrowid == 1
        await connection.execute(
            sa.text("INSERT INTO item (name) VALUES (:name)"),
            [{"name": f"n{index}"} for index in range(5)],
        )
        updated = await connection.execute(
            sa.text("UPDATE item SET name = name || '!' WHERE name LIKE 'n%'")
        )
        assert updated.rowcount == 5
        rows = (await connection.execute(sa.text("SELECT id, name FROM item ORDER BY id"))).all()
    assert [tuple(row) for row in rows] == [
        (1, "x"),
        *((index + 2, f"n{index}!") for index in range(5)),
    ]


async def test_a_failed_statement_rolls_its_transaction_back(database: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with database.session() as session:
            await session.execute(sa.text("INSERT INTO item (name) VALUES ('kept?')"))
            await session.execute(sa.text("INSERT INTO item (name) VALUES ('kept?')"))
    async with database.session(read_only=True) as session:
        count = await session.scalar(sa.text("SELECT count(*) FROM item"))
    assert count == 0


async def test_writers_take_turns_in_the_process_not_in_sqlites_busy_handler(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    run_statement, commit = sqlite_driver.Connection.run, sqlite_driver.Connection.commit

    async def recorded_run(
        self: sqlite_driver.Connection, sql: str, parameters: Any, *, many: bool = False
    ) -> sqlite_driver.Outcome:
        if sql.startswith(("BEGIN", "INSERT")):
            events.append(" ".join([*sql.split()[:2], *map(str, parameters)]))
        return await run_statement(self, sql, parameters, many=many)

    async def recorded_commit(self: sqlite_driver.Connection) -> None:
        events.append("COMMIT")
        await commit(self)

    monkeypatch.setattr(sqlite_driver.Connection, "run", recorded_run)
    monkeypatch.setattr(sqlite_driver.Connection, "commit", recorded_commit)
    first_wrote = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with database.session() as session:
            await session.execute(sa.text("INSERT INTO item (name) VALUES (:n)"), {"n": "first"})
            first_wrote.set()
            await release_first.wait()

    async def second() -> None:
        await first_wrote.wait()
        async with database.session() as session:
            await session.execute(sa.text("INSERT INTO item (name) VALUES (:n)"), {"n": "second"})

    async def reader() -> int | None:
        await first_wrote.wait()
        async with database.session(read_only=True) as session:
            count: int | None = await session.scalar(sa.text("SELECT count(*) FROM item"))
        release_first.set()
        return count

    _, _, seen = await asyncio.gather(first(), second(), reader())

    # The reader went ahead of the waiting writer and saw nothing uncommitted; the second
    # writer began only once the first had committed.
    assert seen == 0
    assert events == [
        "BEGIN IMMEDIATE",
        "INSERT INTO first",
        "BEGIN",  # the reader's
        "COMMIT",
        "COMMIT",
        "BEGIN IMMEDIATE",
        "INSERT INTO second",
        "COMMIT",
    ]


async def test_a_write_session_opened_inside_another_goes_ahead(database: Database) -> None:
    async with database.session() as outer:
        async with database.session() as inner:
            await inner.execute(sa.text("INSERT INTO item (name) VALUES ('inner')"))
        await outer.execute(sa.text("INSERT INTO item (name) VALUES ('outer')"))
    async with database.session(read_only=True) as session:
        names = (await session.execute(sa.text("SELECT name FROM item ORDER BY id"))).scalars()
        assert list(names) == ["inner", "outer"]
