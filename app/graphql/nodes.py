"""Global ids and who may see what they name.

A global id is Relay's: base64 of ``<Type>:<row id>``, the row id a decimal number within
the signed 64-bit range of the id columns. An id that does not hold one (another type's,
letters, a number beyond 64 bits) is a VALIDATION_ERROR whatever the data holds.

Looking one up answers null for a missing row and for a row in a project the caller may
not read, alike; changing one answers NotFoundError for both, for every caller (signed
in or not, so an id tells nobody whether a hidden object exists), and PermissionError
only when the caller may read the object but not make the change."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import relay
from strawberry.dataloader import DataLoader
from strawberry.relay.types import GlobalIDValueError

from app.db import Base
from app.errors import InvalidValueError, NotFoundError
from app.graphql.context import Info
from app.models import LifecycleState, Project
from app.services import policy
from app.services.actor import Actor
from app.services.validation import INT64_MAX


class Owned(Protocol):
    @property
    def project_id(self) -> int: ...


OwnedRow = TypeVar("OwnedRow", bound=Owned)
R = TypeVar("R", bound=Base)
N = TypeVar("N")


def _row_id(node_id: str) -> int | None:
    """The row id a global id's node id holds, if it holds one."""
    # Longer than any 64-bit number: refused before int() parses a huge string.
    if not (node_id.isascii() and node_id.isdecimal()) or len(node_id) > len(str(INT64_MAX)):
        return None
    number = int(node_id)
    return number if number <= INT64_MAX else None


def row_ids(node_ids: Sequence[str]) -> list[int]:
    """Row ids of the node ids strawberry decoded from global ids."""
    found: list[int] = []
    for value in node_ids:
        number = _row_id(value)
        if number is None:
            raise InvalidValueError(f"'{value}' in a global id is not an object id", field="id")
        found.append(number)
    return found


def row_id(id: relay.GlobalID | str, type_name: str, *, field: str = "id") -> int:
    """The row id of a global id that must name a `type_name`. A mutation's input takes
    its ids as plain `ID` strings, decoded here, so a malformed one is the mutation's
    ValidationError rather than a refusal of the whole document."""
    if isinstance(id, str):
        try:
            id = relay.GlobalID.from_id(id)
        except GlobalIDValueError:
            raise InvalidValueError(f"'{id}' is not the id of a {type_name}", field=field) from None
    number = _row_id(id.node_id)
    if id.type_name != type_name or number is None:
        raise InvalidValueError(f"'{id}' is not the id of a {type_name}", field=field)
    return number


async def visible(info: Info, rows: Sequence[OwnedRow | None]) -> list[OwnedRow | None]:
    """The rows the caller may read (READ on their project); None in place of the rest."""
    present = [row for row in rows if row is not None]
    flags = await info.context.loaders.readable.load_many([row.project_id for row in present])
    allowed = {id(row) for row, flag in zip(present, flags, strict=True) if flag}
    return [row if row is not None and id(row) in allowed else None for row in rows]


async def readable_nodes(
    info: Info,
    loader: DataLoader[int, OwnedRow | None],
    node_ids: Iterable[str],
    node: Callable[[OwnedRow], N],
) -> list[N | None]:
    """The nodes of the ids strawberry decoded, null where missing or hidden: what each
    node type's `resolve_nodes` answers."""
    rows = await loader.load_many(row_ids(list(node_ids)))
    return [node(row) if row is not None else None for row in await visible(info, rows)]


async def for_change(
    session: AsyncSession,
    actor: Actor | None,
    entity: type[R],
    id: relay.GlobalID | str,
    *,
    field: str = "id",
) -> R:
    """The active row a global id names, if `actor` may read its project: the service the
    mutation calls next checks the change itself (`app.services.policy`)."""
    type_name = entity.__name__
    row: Any = await session.get(entity, row_id(id, type_name, field=field))
    if row is None or getattr(row, "state", LifecycleState.ACTIVE) is not LifecycleState.ACTIVE:
        raise NotFoundError(f"{type_name} '{id}' does not exist", field=field)
    project = await session.get_one(Project, row.project_id)
    role = await policy.role_in(session, actor, project)
    if not policy.may_read(actor, project, role):
        # The answer for a missing row: an anonymous caller included.
        raise NotFoundError(f"{type_name} '{id}' does not exist", field=field)
    found: R = row
    return found
