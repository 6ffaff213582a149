"""Relay cursor connections: every list that can grow is one, with `pageInfo` and
`totalCount`, paged by keyset cursors (app/services/keyset.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import strawberry
from strawberry import relay

from app.db import Database
from app.errors import InvalidValueError
from app.services import keyset

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000

NodeType = TypeVar("NodeType")


@strawberry.type(description="An item of a page, with its cursor.")
class Edge(Generic[NodeType]):
    cursor: str
    node: NodeType


@strawberry.type(description="A page of a list, with the cursors to the pages around it.")
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]]
    page_info: relay.PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        """How many items the whole list holds, across all pages."""
        return await self.count()


def page_size(first: int | None, last: int | None) -> int:
    """The number of items a page asks for; refuses what Relay and our limits do not allow."""
    if first is not None and last is not None:
        raise InvalidValueError("Pass `first` or `last`, not both", field="first")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
            raise InvalidValueError(
                f"`{name}` must be between 0 and {MAX_PAGE_SIZE}, not {value}", field=name
            )
    size = first if first is not None else last
    return DEFAULT_PAGE_SIZE if size is None else size


async def paginate(
    database: Database,
    query: sa.Select[Any],
    sort: keyset.Sort,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    node: Callable[[Any], NodeType],
) -> Connection[NodeType]:
    """One page of `query` in the order of `sort`, each row turned into a node; the total
    is counted only when asked for."""
    size = page_size(first, last)
    window = keyset.Window(first=first, after=after, last=last, before=before)
    async with database.session(read_only=True) as session:
        page = await keyset.fetch_page(session, query, sort, window, size=size)

    async def count() -> int:
        async with database.session(read_only=True) as session:
            return await keyset.count(session, query)

    edges = [
        Edge(cursor=cursor, node=node(row))
        for row, cursor in zip(page.rows, page.cursors, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=relay.PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        count=count,
    )
