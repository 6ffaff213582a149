"""Name/value entries owned by one row: the metadata of models, versions and candidates,
and candidate params. One way to read, replace and delete them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db import insert_with_conflicts
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


async def read(session: AsyncSession, table: KeyValueTable, *, owner_id: int) -> dict[str, str]:
    """The entries of one owner, by name."""
    rows = await session.execute(
        sa.select(table.name, table.value).where(_owner(table) == owner_id).order_by(table.name)
    )
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
    statement = insert_with_conflicts(session, table)
    conflict = (
        statement.on_conflict_do_update(
            index_elements=[owner, "name"], set_={"value": statement.excluded.value}
        )
        if overwrite
        else statement.on_conflict_do_nothing(index_elements=[owner, "name"])
    )
    await session.execute(
        conflict, [{owner: owner_id, "name": name, "value": value} for name, value in items.items()]
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
    owner = _owner(table)
    rows = await session.execute(
        sa.select(owner, table.name, table.value)
        .where(owner.in_(owner_ids))
        .order_by(owner, table.name)
    )
    for owner_id, name, value in rows:
        found[owner_id][name] = value
    return found
