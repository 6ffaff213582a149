"""Keyset (cursor) pagination over any ordered query.

A `Sort` is a list of keys, the last of which is unique, so the order is total. A cursor
holds the sort values of one row; the page after it is every row that sorts strictly
later, whatever was added or removed since, so a client paging through never sees a row
twice and never skips one that existed when it started. Missing values (NULL) sort last
in both directions, as they do in MLflow's searches.

Backwards pages (`last`/`before`) run the same query with every key reversed (and NULLs
first), then flip the rows back into the forward order.

`read` is the one way a service answers a list in pages: the page a `Window` asks for
(at most `MAX_PAGE_SIZE` rows, `DEFAULT_PAGE_SIZE` when it names no size) and, when the
window asks for it, how many rows the whole list holds, both in the caller's session.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidValueError

CursorValue = int | float | str | dt.datetime | None
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class SortKey:
    expression: sa.SQLColumnExpression[Any]
    ascending: bool = True

    def order(self, *, reverse: bool) -> sa.ColumnElement[Any]:
        ascending = self.ascending != reverse
        ordered: sa.ColumnElement[Any] = (
            self.expression.asc() if ascending else self.expression.desc()
        )
        placed: sa.ColumnElement[Any] = (
            sa.nulls_first(ordered) if reverse else sa.nulls_last(ordered)
        )
        return placed

    def beyond(self, value: CursorValue, *, reverse: bool) -> sa.ColumnElement[bool]:
        """Rows strictly past `value` on this key, in the forward (or reversed) order."""
        if not reverse:
            if value is None:  # nothing comes after the missing values
                return sa.false()
            later = self.expression > value if self.ascending else self.expression < value
            return sa.or_(later, self.expression.is_(None))
        if value is None:
            return self.expression.is_not(None)
        return self.expression < value if self.ascending else self.expression > value

    def equal(self, value: CursorValue) -> sa.ColumnElement[bool]:
        return self.expression.is_(None) if value is None else self.expression == value


@dataclass(frozen=True)
class Sort:
    keys: Sequence[SortKey]
    # Cursors name the sort they belong to: one from another order is refused.
    signature: str

    def beyond(self, values: Sequence[CursorValue], *, reverse: bool) -> sa.ColumnElement[bool]:
        alternatives = []
        for index, key in enumerate(self.keys):
            same = [self.keys[i].equal(values[i]) for i in range(index)]
            alternatives.append(sa.and_(*same, key.beyond(values[index], reverse=reverse)))
        return sa.or_(*alternatives)


@dataclass(frozen=True)
class Window:
    """Which rows of the order a page asks for (Relay's connection arguments), and
    whether the size of the whole list is wanted too."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    count: bool = False

    @property
    def size(self) -> int:
        """The number of rows the page asks for; refuses what Relay and our limits do
        not allow."""
        if self.first is not None and self.last is not None:
            raise InvalidValueError("Pass `first` or `last`, not both", field="first")
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise InvalidValueError(
                    f"`{name}` must be between 0 and {MAX_PAGE_SIZE}, not {value}", field=name
                )
        size = self.first if self.first is not None else self.last
        return DEFAULT_PAGE_SIZE if size is None else size


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    # How many rows the whole list holds: counted only when the window asks for it.
    total: int | None = None

    def map(self, convert: Callable[[T], U]) -> KeysetPage[U]:
        """The same page with each row converted."""
        rows = [convert(row) for row in self.rows]
        return KeysetPage(
            rows, self.cursors, self.has_next_page, self.has_previous_page, self.total
        )


def encode_cursor(sort: Sort, values: Sequence[CursorValue]) -> str:
    text = json.dumps([sort.signature, [_plain(value) for value in values]])
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # JSON has no infinities (NaN sorts as a rank)
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if value is None or isinstance(value, int | float | str):
        return value
    raise TypeError(f"a sort key holds {type(value).__name__}, not a plain value")


def decode_cursor(sort: Sort, cursor: str, *, field: str) -> list[CursorValue]:
    try:
        signature, values = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (UnicodeError, binascii.Error, ValueError, TypeError):
        raise InvalidValueError(f"'{cursor}' is not a cursor of this list", field=field) from None
    if (
        signature != sort.signature
        or not isinstance(values, list)
        or len(values) != len(sort.keys)
        or not all(_is_key_value(value) for value in values)
    ):
        raise InvalidValueError(
            f"'{cursor}' is not a cursor of this list in this order", field=field
        )
    return [_key_value(value) for value in values]


def _is_key_value(value: Any) -> bool:
    if isinstance(value, dict):
        if value in ({"float": "inf"}, {"float": "-inf"}):
            return True
        return list(value) == ["datetime"] and _is_datetime(value["datetime"])
    return value is None or isinstance(value, int | float | str)


def _is_datetime(text: Any) -> bool:
    try:
        return isinstance(text, str) and dt.datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _key_value(value: Any) -> CursorValue:
    if isinstance(value, dict) and "datetime" in value:
        return dt.datetime.fromisoformat(value["datetime"])
    if isinstance(value, dict):
        return float(value["float"])
    assert value is None or isinstance(value, int | float | str)
    return value


async def read(
    session: AsyncSession, query: sa.Select[Any], sort: Sort, window: Window
) -> KeysetPage[Any]:
    """The page of `query` (which selects the rows, unordered) that `window` asks for, in
    the forward order of `sort`, with the total when the window asks for it."""
    page = await _fetch_page(session, query, sort, window, size=window.size)
    if not window.count:
        return page
    total = await _count(session, query)
    return KeysetPage(page.rows, page.cursors, page.has_next_page, page.has_previous_page, total)


async def _fetch_page(
    session: AsyncSession, query: sa.Select[Any], sort: Sort, window: Window, *, size: int
) -> KeysetPage[Any]:
    reverse = window.last is not None and window.first is None
    keyed = query.add_columns(*(key.expression for key in sort.keys))
    if window.after is not None:
        after = decode_cursor(sort, window.after, field="after")
        keyed = keyed.where(sort.beyond(after, reverse=False))
    if window.before is not None:
        before = decode_cursor(sort, window.before, field="before")
        keyed = keyed.where(sort.beyond(before, reverse=True))
    keyed = keyed.order_by(*(key.order(reverse=reverse) for key in sort.keys))
    result = list((await session.execute(keyed.limit(size + 1))).all())
    more = len(result) > size
    result = result[:size]
    if reverse:
        result.reverse()
    width = len(sort.keys)
    rows = [row[0] for row in result]
    cursors = [encode_cursor(sort, list(row[-width:])) for row in result]
    # Relay: a page asked for forwards knows whether more follow, backwards whether more
    # precede; the other flag says whether the cursor it started from had rows beyond it.
    if reverse:
        return KeysetPage(rows, cursors, window.before is not None, more)
    return KeysetPage(rows, cursors, more, window.after is not None)


async def _count(session: AsyncSession, query: sa.Select[Any]) -> int:
    """How many rows `query` selects, whatever the page."""
    total = await session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    return int(total or 0)
