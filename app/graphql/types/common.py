"""Small types shared by the schema: 64-bit integers and dates (both range-checked, so a
value beyond what the database holds is refused as GraphQL refuses a bad Int, before the
operation runs), metric values in MLflow's JSON, key/value entries and sort direction.

A chart's arrays are scalars of their own (`LongArray`, `MetricValueArray`): the JSON is
the same array a list would give, but one value to complete instead of one per point
(GraphQL completes each item of a list on its own, which costs more than the chart's
database read)."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Mapping
from typing import NewType

import strawberry
from graphql import GraphQLError
from graphql.pyutils import inspect
from strawberry.types.scalar import ScalarDefinition

from app.services.validation import INT64_MAX, INT64_MIN

Long = NewType("Long", int)
LongArray = NewType("LongArray", list[int])
MetricValueArray = NewType("MetricValueArray", list[float])
# A metric value as MLflow writes a double in JSON: GraphQL's Float holds no NaN or infinity.
MetricValue = NewType("MetricValue", float)


def parse_long(value: object) -> Long:
    """A Long input, in a variable or a literal: a whole number in the signed 64-bit
    range of the columns that hold it; anything else is refused as GraphQL refuses a bad
    Int, before the operation runs."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, bool) or not isinstance(number, int):
        raise GraphQLError(f"Long cannot represent a non-integer value: {inspect(value)}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise GraphQLError(
            f"Long cannot represent a value outside the signed 64-bit range: {inspect(value)}"
        )
    return Long(number)


def parse_datetime(value: object) -> dt.datetime:
    """A DateTime input: ISO 8601, at an instant that exists in UTC (years 1 to 9999),
    where it is stored. One without a UTC offset is left for the field that takes it to
    refuse by name: a ValidationError, as for any other rule of that field."""
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime cannot represent a non-string value: {inspect(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise GraphQLError(
            f"DateTime cannot represent {inspect(value)}: not an ISO 8601 date and time"
        ) from None
    try:
        if parsed.utcoffset() is not None:
            parsed.astimezone(dt.UTC)
    except OverflowError:
        raise GraphQLError(
            f"DateTime cannot represent {inspect(value)}: it lies beyond the years 1 to 9999 in UTC"
        ) from None
    return parsed


def serialize_metric_value(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def serialize_metric_values(values: list[float]) -> list[float | str]:
    return [serialize_metric_value(value) for value in values]


def _output_only(name: str) -> Callable[[object], object]:
    def refuse(value: object) -> object:
        raise GraphQLError(f"{name} is an output type: it is never an argument")

    return refuse


SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A signed 64-bit integer (GraphQL's Int holds 32 bits).",
        serialize=int,
        parse_value=parse_long,
    ),
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description="A date and time in ISO 8601, with its UTC offset: 2024-05-01T12:00:00Z.",
        serialize=dt.datetime.isoformat,
        parse_value=parse_datetime,
    ),
    MetricValue: strawberry.scalar(
        name="MetricValue",
        description='A metric value as MLflow writes a double in JSON: a number, or "NaN", '
        '"Infinity" or "-Infinity".',
        serialize=serialize_metric_value,
        parse_value=float,
    ),
    LongArray: strawberry.scalar(
        name="LongArray",
        description="An array of signed 64-bit integers (a chart's steps or timestamps).",
        serialize=list,
        parse_value=_output_only("LongArray"),
    ),
    MetricValueArray: strawberry.scalar(
        name="MetricValueArray",
        description="An array of metric values, each as `MetricValue` writes it.",
        serialize=serialize_metric_values,
        parse_value=_output_only("MetricValueArray"),
    ),
}


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "asc"
    DESC = "desc"

    @property
    def ascending(self) -> bool:
        return self is OrderDirection.ASC


@strawberry.type(description="One metadata entry, parameter or tag.")
class KeyValue:
    name: str
    value: str

    @staticmethod
    def listed(entries: Mapping[str, str]) -> list[KeyValue]:
        return [KeyValue(name=name, value=entries[name]) for name in sorted(entries)]


@strawberry.input
class KeyValueInput:
    name: str
    value: str

    @staticmethod
    def as_dict(entries: list[KeyValueInput] | None) -> dict[str, str]:
        return {entry.name: entry.value for entry in entries or ()}
