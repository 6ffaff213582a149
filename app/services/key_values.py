"""Name/value entries owned by one row: the metadata of models, versions and candidates,
and candidate params. One way to read, replace and delete them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db import insert_for
from app.models import CandidateMetadata, CandidateParam, ModelMetadata, ModelVersionMetadata

KeyValueTable = (
    type[ModelMetadata]
    | type[ModelVersionMetadata]
    | type[CandidateMetadata]
    | type[CandidateParam]
)


def _owner(table: KeyValueTable) -> InstrumentedAttribute[int]:
    if table is ModelMetadata:
        return ModelMetadata.model_id
    if table is ModelVersionMetadata:
        return ModelVersionMetadata.version_id
    if table is CandidateMetadata:
        return CandidateMetadata.candidate_id
    return CandidateParam.candidate_id


@dataclass(frozen=True)
class _Statements:
    read: sa.Select[str, str]
    read_many: sa.Select[int, str, str]


# Runs and versions are rendered with their entries on every MLflow call that answers
# one, and tags are written as often: these statements are built once per table and
# shape (see `app.db`).
@functools.cache
def _statements(table: KeyValueTable) -> _Statements:
    owner = _owner(table)
    return _Statements(
        read=sa.select(table.name, table.value)
        .where(owner == sa.bindparam("owner_id"))
        .order_by(table.name),
        read_many=sa.select(owner, table.name, table.value)
        .where(owner.in_(sa.bindparam("owner_ids", expanding=True)))
        .order_by(owner, table.name),
    )


@functools.cache
def _upsert(dialect: str, table: KeyValueTable, overwrite: bool) -> sa.Insert:
    """The INSERT of `replace` on `dialect`: ON CONFLICT updates the value, or keeps the
    existing one when not `overwrite`."""
    owner = _owner(table).key
    statement = insert_for(dialect, table)
    if overwrite:
        return statement.on_conflict_do_update(
            index_elements=[owner, "name"], set_={"value": statement.excluded.value}
        )
    return statement.on_conflict_do_nothing(index_elements=[owner, "name"])


async def read(session: AsyncSession, table: KeyValueTable, *, owner_id: int) -> dict[str, str]:
    """The entries of one owner, by name."""
    rows = await session.execute(_statements(table).read, {"owner_id": owner_id})
    return dict(rows.all())


async def replace(
    session: AsyncSession,
    table: KeyValueTable,
    *,
    owner_id: int,
    items: Mapping[str, str],
    overwrite: bool = True,
) -> None:
    """Write validated entries in one statement; existing names get the new value, or
    keep theirs when `overwrite` is off."""
    if not items:
        return
    owner = _owner(table).key
    await session.execute(
        _upsert(session.get_bind().dialect.name, table, overwrite),
        [{owner: owner_id, "name": name, "value": value} for name, value in items.items()],
    )


async def delete(session: AsyncSession, table: KeyValueTable, *, owner_id: int, name: str) -> bool:
    """Remove one entry; False when there was none."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            sa.delete(table).where(_owner(table) == owner_id, table.name == name)
        ),
    )
    return result.rowcount > 0


async def read_many(
    session: AsyncSession, table: KeyValueTable, *, owner_ids: list[int]
) -> dict[int, dict[str, str]]:
    """The entries of many owners in one query, by owner then name."""
    found: dict[int, dict[str, str]] = {owner_id: {} for owner_id in owner_ids}
    if not owner_ids:
        return found
    rows = await session.execute(_statements(table).read_many, {"owner_ids": owner_ids})
    for owner_id, name, value in rows:
        found[owner_id][name] = value
    return found
