"""The SQL pieces every search compiles with, meaning the same on SQLite and PostgreSQL:
LIKE and ILIKE with MLflow's semantics (`string_condition`), code-point string order
(`CodepointOrder`), comparisons with integer and timestamp columns that also take values
the column cannot hold (`integer_condition`, `epoch_ms_condition`), metric values with
NaN (`metric_value_condition`), NULLs-last ordering (`direction`), and the conversions
between datetimes and MLflow's milliseconds since the epoch."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from app.search.grammar import EQ, GE, GT, ILIKE, IN, LE, LIKE, LT, NE, NOT_IN, Value

__all__ = [
    "CodepointOrder",
    "datetime_to_ms",
    "direction",
    "epoch_ms_condition",
    "integer_condition",
    "like_to_glob",
    "metric_value_condition",
    "ms_to_datetime",
    "string_condition",
]

# --- SQL constructs ----------------------------------------------------------------------


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, backslash escapes) as the equivalent SQLite GLOB
    pattern: the wildcards become ``*`` and ``?`` and GLOB's own special characters are
    bracketed so they match themselves."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            literal = next(chars, "")
            out.append(_glob_literal(literal))
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(_glob_literal(char))
    return "".join(out)


def _glob_literal(char: str) -> str:
    return f"[{char}]" if char in "*?[" else char


class _Like(sa.ColumnElement[bool]):
    """``expression LIKE pattern`` (or ILIKE), meaning the same on every backend: ``%``
    and ``_`` are wildcards, a backslash escapes the next character, and only ILIKE ignores
    case. PostgreSQL gets ``LIKE``/``ILIKE ... ESCAPE '\\'``. SQLite's LIKE ignores ASCII
    case whatever is asked (short of a connection-wide pragma), so there the
    case-sensitive form compiles to GLOB, which is case-sensitive, with the pattern
    translated; the case-insensitive form is ``lower(x) LIKE lower(pattern)``.

    Both patterns travel as bound parameters; only the one the dialect renders is sent."""

    __visit_name__ = "mlflow_search_like"
    inherit_cache = True
    # A predicate already: no "= 1" is appended where booleans are not native (SQLite).
    _is_implicitly_boolean = True
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's cache-key protocol)
        ("operand", InternalTraversal.dp_clauseelement),
        ("like_pattern", InternalTraversal.dp_clauseelement),
        ("glob_pattern", InternalTraversal.dp_clauseelement),
        ("case_sensitive", InternalTraversal.dp_boolean),
    ]

    def __init__(
        self, expression: sa.SQLColumnExpression[Any], pattern: str, *, case_sensitive: bool
    ) -> None:
        self.operand = coercions.expect(roles.ExpressionElementRole, expression)
        self.like_pattern = sa.bindparam(None, pattern, type_=sa.String(), unique=True)
        self.glob_pattern = sa.bindparam(
            None, like_to_glob(pattern), type_=sa.String(), unique=True
        )
        self.case_sensitive = case_sensitive
        self.type = sa.Boolean()

    @property
    def _from_objects(self) -> Any:
        return self.operand._from_objects


@compiles(_Like)
def _compile_like(element: _Like, compiler: SQLCompiler, **kw: Any) -> str:
    if element.case_sensitive:
        condition = element.operand.like(element.like_pattern, escape="\\")
    else:
        condition = element.operand.ilike(element.like_pattern, escape="\\")
    return compiler.process(condition, **kw)


@compiles(_Like, "sqlite")
def _compile_like_sqlite(element: _Like, compiler: SQLCompiler, **kw: Any) -> str:
    if element.case_sensitive:
        condition = element.operand.op("GLOB", is_comparison=True)(element.glob_pattern)
    else:
        condition = sa.func.lower(element.operand).like(
            sa.func.lower(element.like_pattern), escape="\\"
        )
    return compiler.process(condition, **kw)


class CodepointOrder(sa.ColumnElement[Any]):
    """A string expression that sorts by code point: ``COLLATE "C"`` on PostgreSQL (whose
    database collation may be linguistic), unchanged on SQLite (binary already)."""

    __visit_name__ = "mlflow_search_codepoint"
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's cache-key protocol)
        ("operand", InternalTraversal.dp_clauseelement)
    ]

    def __init__(self, expression: sa.SQLColumnExpression[Any]) -> None:
        self.operand = coercions.expect(roles.ExpressionElementRole, expression)
        self.type = self.operand.type

    @property
    def _from_objects(self) -> Any:
        return self.operand._from_objects


@compiles(CodepointOrder)
def _compile_codepoint(element: CodepointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.operand, **kw)


@compiles(CodepointOrder, "postgresql")
def _compile_codepoint_postgresql(element: CodepointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.operand, **kw)} COLLATE "C"'


# --- Shared compilation helpers ----------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    EQ: operator.eq,
    NE: operator.ne,
    LT: operator.lt,
    LE: operator.le,
    GT: operator.gt,
    GE: operator.ge,
}


def string_condition(
    expression: sa.SQLColumnExpression[Any], op: str, value: Value
) -> sa.ColumnElement[bool]:
    """A string comparison; a NULL expression never matches (MLflow: a missing value)."""
    if op == LIKE:
        return _Like(expression, str(value), case_sensitive=True)
    if op == ILIKE:
        return _Like(expression, str(value), case_sensitive=False)
    if op == IN:
        assert isinstance(value, tuple)
        return expression.in_(value)
    if op == NOT_IN:
        assert isinstance(value, tuple)
        return sa.and_(expression.is_not(None), expression.not_in(value))
    condition: sa.ColumnElement[bool] = _COMPARE[op](expression, value)
    return condition


def integer_condition(
    column: sa.SQLColumnExpression[Any], op: str, value: int, *, bits: int = 64
) -> sa.ColumnElement[bool]:
    """A comparison with an integer column, also for values the column type cannot hold
    (they decide the comparison alone: nothing is above the largest value)."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if low <= value <= high:
        condition: sa.ColumnElement[bool] = _COMPARE[op](column, value)
        return condition
    # Out of range: every stored value lies on the same side of it.
    matching_all = (LT, LE, NE) if value > high else (GT, GE, NE)
    return column.is_not(None) if op in matching_all else sa.false()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)


def ms_to_datetime(ms: int) -> dt.datetime:
    """Milliseconds since the epoch as a UTC datetime (OverflowError out of its range)."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def datetime_to_ms(value: dt.datetime) -> int:
    """A datetime as MLflow's milliseconds since the epoch, floored, in exact integer
    arithmetic; timestamps filters compare against must be rendered with this."""
    return (value - _EPOCH) // _ONE_MS


_MIN_MS = datetime_to_ms(dt.datetime.min.replace(tzinfo=dt.UTC)) + 1
_MAX_MS = datetime_to_ms(dt.datetime.max.replace(tzinfo=dt.UTC)) - 1


def epoch_ms_condition(
    column: sa.SQLColumnExpression[dt.datetime], op: str, ms: int
) -> sa.ColumnElement[bool]:
    """Compare a datetime column as its floored millisecond count (see `datetime_to_ms`)
    with a range on the column itself, so ``creation_time = <a rendered value>`` matches
    whatever the sub-millisecond digits, and an index on the column serves it."""
    if ms < _MIN_MS or ms > _MAX_MS:
        matching_all = (LT, LE, NE) if ms > _MAX_MS else (GT, GE, NE)
        return column.is_not(None) if op in matching_all else sa.false()
    start, end = ms_to_datetime(ms), ms_to_datetime(ms + 1)
    if op == EQ:
        return sa.and_(column >= start, column < end)
    if op == NE:
        return sa.or_(column < start, column >= end)
    if op == LT:
        return column < start
    if op == LE:
        return column < end
    if op == GT:
        return column >= end
    return column >= start


def direction(expression: sa.SQLColumnExpression[Any], ascending: bool) -> sa.ColumnElement[Any]:
    """Ascending or descending with NULLs (missing values) last either way."""
    ordered: sa.ColumnElement[Any] = expression.asc() if ascending else expression.desc()
    last: sa.ColumnElement[Any] = sa.nulls_last(ordered)
    return last


def metric_value_condition(
    value: sa.SQLColumnExpression[float | None],
    is_nan: sa.SQLColumnExpression[bool],
    op: str,
    number: float,
) -> sa.ColumnElement[bool]:
    """A stored metric value (NaN kept as `is_nan`) compares true with `number`; shared
    by run and logged model searches."""
    if op == NE:
        # IEEE: NaN differs from every number.
        return sa.or_(is_nan, value != number)
    return sa.and_(~is_nan, _COMPARE[op](value, number))
