"""Database engine, the one session factory, and the declarative base.

SQLite is reached through `app.sqlite_driver` (one thread hop per statement). A statement
on the path of a training script's calls (the caller's project and role, the run, the
experiment, what a run is rendered with, what a logged batch writes) is built once, at
import or by a `functools.cache`d function of its shape, and run with bound parameters:
building and keying a SQLAlchemy statement costs 30 to 120 us, about what SQLite takes to
run it. Other statements are built where they run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Collection
from contextvars import ContextVar
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app import sqlite_driver
from app.database_outage import DatabaseUnavailableError
from app.outbox import Outbox

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A server that does not answer (a dropped route, not a refused port) fails a connection
# attempt after this long instead of asyncpg's 60 s, so requests answer 503 quickly.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5.0

# SQLite only auto-increments an "INTEGER PRIMARY KEY"; PostgreSQL gets 64-bit ids.
Identifier = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Row = TypeVar("Row", bound=Base)


async def rows_by_id(
    session: AsyncSession, entity: type[Row], ids: Collection[int], *conditions: Any
) -> dict[int, Row]:
    """Rows of `entity` by primary key, in one query; `conditions` narrow them."""
    if not ids:
        return {}
    key: Any = entity.__mapper__.primary_key[0]
    rows = await session.scalars(sa.select(entity).where(key.in_(ids), *conditions))
    return {row.__mapper__.primary_key_from_instance(row)[0]: row for row in rows}


def insert_with_conflicts(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for the session's database that accepts ON CONFLICT clauses."""
    return insert_for(session.get_bind().dialect.name, table)


def insert_for(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT accepting ON CONFLICT clauses for the database `dialect` names."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def create_engine(url: str, *, foreign_keys: bool = True, **options: Any) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, a busy timeout and foreign keys (which
    migrations turn off: SQLite rebuilds a table to change it, and dropping the old copy
    with foreign keys on would cascade into the rows that point at it)."""
    if not url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            # A pooled connection that a database restart broke is replaced, not used.
            pool_pre_ping=True,
            connect_args={
                # No JIT: our queries are short index walks, and compiling one cost ~90 ms
                # more than running it (EXPLAIN ANALYZE of a 100,000-run search).
                "server_settings": {"jit": "off"},
                "timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            },
            **options,
        )
        event.listen(engine.sync_engine, "do_connect", _connect_or_report_unavailable)
        return engine
    path = sa.make_url(url).database or ""
    engine = create_async_engine(
        url,
        async_creator=lambda: sqlite_driver.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000),
        **options,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Leave transaction control to SQLAlchemy's begin hook below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_sqlite(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with
        # SQLITE_BUSY when another writer committed in between; writers take the
        # lock up front and wait their turn instead. Read-only sessions stay deferred.
        read_only = connection.get_execution_options().get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


# asyncpg's errors for a server that is starting up, shutting down, crashing, out of
# connection slots, or that dropped the connection during its start.
_UNREACHABLE_POSTGRES_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.PostgresConnectionError,
)


def _connect_or_report_unavailable(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any
) -> Any:
    """Open a PostgreSQL connection; a server that cannot be reached raises
    `DatabaseUnavailableError` naming it. The driver reports that as a bare OSError, or
    as one of its own errors that its SQLAlchemy adapter may wrap: the cause tells."""
    try:
        return dialect.loaded_dbapi.connect(*cargs, **cparams)
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, (OSError, *_UNREACHABLE_POSTGRES_ERRORS)):
            cause = cause.__cause__
        if cause is None:
            raise
        where = f"{cparams.get('host', '?')}:{cparams.get('port', 5432)}"
        reason = str(cause) or type(cause).__name__
        raise DatabaseUnavailableError(f"database at {where} unreachable: {reason}") from error


# Services put the ids of Job rows they wrote here; they are pushed after the commit.
ENQUEUED_JOBS_KEY = "enqueued_job_ids"
# And the change events they staged (`app.events.stage`), published after the commit.
STAGED_EVENTS_KEY = "staged_events"


# Whether the running task holds the SQLite writers' turn (`Database._turn_to_write`).
_HOLDS_WRITER_TURN: ContextVar[bool] = ContextVar("holds_writer_turn", default=False)


class Database:
    """Owns the engine and hands out sessions; one per process. The ids of the jobs a
    session enqueued, and the events it staged, go to `outbox` once that session
    committed (a fresh outbox, which no one listens to yet, when none is given)."""

    def __init__(self, url: str, *, outbox: Outbox | None = None, **engine_options: Any) -> None:
        self.url = url
        self.outbox = outbox or Outbox()
        self.engine = create_engine(url, **engine_options)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(read_only=True), expire_on_commit=False
        )
        # SQLite lets one transaction write at a time. Writers of this process take turns
        # here, each handed the turn the moment the last one ends, rather than in SQLite's
        # busy handler, which sleeps 1, 2, 5, 10 ... ms between tries: eight clients
        # logging at once had spent most of their time asleep.
        self._writer_turn = asyncio.Lock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextlib.asynccontextmanager
    async def session(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends and rolls back on error."""
        factory = self._read_sessions if read_only else self._sessions
        async with self._turn_to_write(read_only), factory() as session:
            async with session.begin():
                yield session
            job_ids: list[int] = session.info.pop(ENQUEUED_JOBS_KEY, [])
            events = session.info.pop(STAGED_EVENTS_KEY, [])
        await self.outbox.committed(job_ids, events)

    @contextlib.asynccontextmanager
    async def _turn_to_write(self, read_only: bool) -> AsyncIterator[None]:
        """The SQLite writers' turn (see __init__), for a session that may write. A session
        opened while the task holds the turn already goes ahead, as does one that waited
        as long as SQLite's own busy timeout: SQLite's locking then decides, as it does
        between processes."""
        if self._writer_turn is None or read_only or _HOLDS_WRITER_TURN.get():
            yield
            return
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self._writer_turn.acquire()
        except TimeoutError:
            yield
            return
        holds = _HOLDS_WRITER_TURN.set(True)
        try:
            yield
        finally:
            _HOLDS_WRITER_TURN.reset(holds)
            self._writer_turn.release()

    async def dispose(self) -> None:
        await self.engine.dispose()
