"""Relay cursor connections: every list that can grow is one, with `pageInfo` and
`totalCount`, paged by keyset cursors. A resolver turns its arguments into a
`keyset.Window` (`window`), asks a service for the page, and renders it (`connection`);
the total is counted, in the same session as the page, only when the query selects
`totalCount`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry
from strawberry import relay
from strawberry.types.nodes import SelectedField, Selection

from app.graphql.context import Info
from app.services import keyset

DEFAULT_PAGE_SIZE = keyset.DEFAULT_PAGE_SIZE

NodeType = TypeVar("NodeType")
Row = TypeVar("Row")


@strawberry.type(description="An item of a page, with its cursor.")
class Edge(Generic[NodeType]):
    cursor: str
    node: NodeType


@strawberry.type(description="A page of a list, with the cursors to the pages around it.")
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]]
    page_info: relay.PageInfo
    total: strawberry.Private[int | None]

    @strawberry.field
    def total_count(self) -> int:
        """How many items the whole list holds, across all pages."""
        # `window` asks for the count whenever the query selects this field.
        assert self.total is not None
        return self.total


def window(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> keyset.Window:
    """The window a connection field's arguments ask for; it counts the whole list when
    the query selects `totalCount` (in any fragment)."""
    count = any(
        _selects(field.selections, "totalCount")
        for field in info.selected_fields
        if isinstance(field, SelectedField)
    )
    return keyset.Window(first=first, after=after, last=last, before=before, count=count)


def _selects(selections: Sequence[Selection], name: str) -> bool:
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif _selects(selection.selections, name):  # a fragment's own selections
            return True
    return False


def connection(
    page: keyset.KeysetPage[Row], node: Callable[[Row], NodeType]
) -> Connection[NodeType]:
    """A service's page as a connection, each row turned into a node."""
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
        total=page.total,
    )
