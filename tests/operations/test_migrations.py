"""The Alembic migrations on both backends: they build exactly the ORM's schema, tear it
down again, and tell whether a database is at the newest revision."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

import app.models  # noqa: F401  (registers every table on the metadata)
from app import migrations
from app.db import Base, create_engine

_database_numbers = itertools.count(1)


async def _admin_connection(postgres_url: str) -> Any:
    url = make_url(postgres_url)
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )


@pytest.fixture
async def empty_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The URL of a database with no tables at all, on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    name = f"modelreg_migrations_{os.getpid()}_{next(_database_numbers)}"
    connection = await _admin_connection(postgres_url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        connection = await _admin_connection(postgres_url)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await connection.close()


async def _table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            names: list[str] = await connection.run_sync(
                lambda sync: sa.inspect(sync).get_table_names()
            )
    finally:
        await engine.dispose()
    return set(names)


async def _current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            revision: str | None = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
    return revision


async def _is_at_head(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        return await migrations.is_at_head(engine)
    finally:
        await engine.dispose()


def _head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(migrations.alembic_config(database_url)).get_current_head()


def _schema_differences(connection: Connection) -> list[Any]:
    # Configured as migrations/env.py configures autogenerate.
    context = MigrationContext.configure(
        connection=connection,
        opts={"target_metadata": Base.metadata, "compare_type": True},
    )
    differences: list[Any] = compare_metadata(context, Base.metadata)
    return differences


async def test_upgrade_downgrade_upgrade_round_trips_on_both_backends(
    empty_database_url: str,
) -> None:
    orm_tables = set(Base.metadata.tables)

    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert await _table_names(empty_database_url) == orm_tables | {"alembic_version"}
    assert await _current_revision(empty_database_url) == _head_revision(empty_database_url)

    await asyncio.to_thread(migrations.downgrade, empty_database_url, "base")
    assert await _table_names(empty_database_url) == {"alembic_version"}
    assert await _current_revision(empty_database_url) is None

    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert await _table_names(empty_database_url) == orm_tables | {"alembic_version"}
    assert await _current_revision(empty_database_url) == _head_revision(empty_database_url)


async def test_migrated_schema_matches_the_orm_metadata_on_both_backends(
    empty_database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, empty_database_url)

    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_schema_differences)
    finally:
        await engine.dispose()

    assert differences == []


async def test_is_at_head_is_false_on_an_empty_database_and_true_after_upgrade(
    empty_database_url: str,
) -> None:
    assert await _is_at_head(empty_database_url) is False

    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert await _is_at_head(empty_database_url) is True

    await asyncio.to_thread(migrations.downgrade, empty_database_url, "base")
    assert await _is_at_head(empty_database_url) is False


async def test_descriptions_written_before_0005_get_their_html_on_both_backends(
    empty_database_url: str,
) -> None:
    """Rows with a description when 0005 runs get it rendered; one longer than the new
    limit is shown as escaped preformatted text; no description, no HTML."""
    await asyncio.to_thread(migrations.upgrade, empty_database_url, "0004")
    card = "# Card\n\n**bold** <b>raw</b> [x](javascript:alert(1))\n"
    legacy = "*" * 10_001 + "<script>"
    now = dt.datetime.now(dt.UTC)
    models = sa.table(
        "models",
        *(sa.column(name) for name in ("id", "project_id", "iid", "name", "display_name")),
        *(sa.column(name) for name in ("description", "registered", "state")),
        sa.column("last_version_number"),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    model_versions = sa.table(
        "model_versions",
        *(sa.column(name) for name in ("project_id", "model_id", "number", "version")),
        *(sa.column(name) for name in ("description", "stage", "status", "state")),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            project_id = await connection.scalar(sa.text("SELECT id FROM projects"))
            for iid, description in [(1, card), (2, legacy), (3, None)]:
                model_id = await connection.scalar(
                    models.insert()
                    .values(
                        project_id=project_id,
                        iid=iid,
                        name=f"model-{iid}",
                        display_name=f"Model {iid}",
                        description=description,
                        registered=True,
                        state="active",
                        last_version_number=1,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(models.c.id)
                )
                await connection.execute(
                    model_versions.insert().values(
                        project_id=project_id,
                        model_id=model_id,
                        number=1,
                        version="1.0.0",
                        description=description,
                        stage="None",
                        status="READY",
                        state="active",
                        created_at=now,
                        updated_at=now,
                    )
                )

        await asyncio.to_thread(migrations.upgrade, empty_database_url)

        async with engine.connect() as connection:
            found = {}
            for table in ("models", "model_versions"):
                rows = await connection.execute(
                    sa.text(f"SELECT description, description_html FROM {table} ORDER BY id")
                )
                found[table] = [tuple(row) for row in rows]
    finally:
        await engine.dispose()
    card_html = (
        "<h1>Card</h1>\n<p><strong>bold</strong> &lt;b&gt;raw&lt;/b&gt; "
        "[x](javascript:alert(1))</p>\n"
    )
    expected = [
        (card, card_html),
        (legacy, f"<pre>{'*' * 10_001}&lt;script&gt;</pre>\n"),
        (None, None),
    ]
    # The Default model (from 0002) has no description.
    assert found["models"] == [(None, None), *expected]
    assert found["model_versions"] == expected


async def test_identical_metric_points_stored_before_0006_are_kept_once_on_both_backends(
    empty_database_url: str,
) -> None:
    """0006 keeps the oldest of each set of identical points (NaN ones too, now stored as
    0 with is_nan set), leaves different values and other runs alone, and then refuses a
    copy through its unique index."""
    await asyncio.to_thread(migrations.upgrade, empty_database_url, "0005")
    now = dt.datetime.now(dt.UTC)
    candidates = sa.table(
        "candidates",
        *(sa.column(name) for name in ("id", "project_id", "model_id", "iid", "eid")),
        *(sa.column(name) for name in ("status", "state")),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    metrics = sa.table(
        "candidate_metrics",
        *(sa.column(name) for name in ("id", "candidate_id", "name", "value", "is_nan")),
        *(sa.column(name) for name in ("step", "timestamp")),
    )
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            project_id = await connection.scalar(sa.text("SELECT id FROM projects"))
            model_id = await connection.scalar(sa.text("SELECT id FROM models"))
            run_ids = []
            for iid in (1, 2):
                run_ids.append(
                    await connection.scalar(
                        candidates.insert()
                        .values(
                            project_id=project_id,
                            model_id=model_id,
                            iid=iid,
                            eid=f"{iid:032x}",
                            status="FINISHED",
                            state="active",
                            created_at=now,
                        )
                        .returning(candidates.c.id)
                    )
                )
            first, second = run_ids
            rows = [
                (first, "loss", 0.5, False, 1),
                (first, "loss", 0.5, False, 1),
                (first, "loss", 0.7, False, 1),
                (first, "loss", None, True, 2),
                (first, "loss", 0.5, False, 1),
                (first, "loss", None, True, 2),
                (second, "loss", 0.5, False, 1),
            ]
            for candidate_id, name, value, is_nan, step in rows:
                await connection.execute(
                    metrics.insert().values(
                        candidate_id=candidate_id,
                        name=name,
                        value=value,
                        is_nan=is_nan,
                        step=step,
                        timestamp=1000,
                    )
                )

        await asyncio.to_thread(migrations.upgrade, empty_database_url)

        async with engine.connect() as connection:
            kept = [
                tuple(row)
                for row in await connection.execute(
                    sa.select(
                        metrics.c.candidate_id, metrics.c.value, metrics.c.is_nan, metrics.c.step
                    ).order_by(metrics.c.id)
                )
            ]
            with pytest.raises(sa.exc.IntegrityError):
                await connection.execute(
                    metrics.insert().values(
                        candidate_id=first,
                        name="loss",
                        value=0.5,
                        is_nan=False,
                        step=1,
                        timestamp=1000,
                    )
                )
    finally:
        await engine.dispose()
    assert kept == [
        (first, 0.5, False, 1),
        (first, 0.7, False, 1),
        (first, 0.0, True, 2),
        (second, 0.5, False, 1),
    ]
