"""MLflow's filter and order_by grammar, without SQL: `parse_filter` and `parse_order_by`
read a string into validated `Comparison`s and `OrderBy`s, checked against the
`SearchSchema` of one search (`RUN_SEARCH`, `EXPERIMENT_SEARCH`,
`REGISTERED_MODEL_SEARCH`, `MODEL_VERSION_SEARCH`); anything else raises `SearchError`,
whose message points at the offending character. The grammar itself is specified in the
package docstring (`app.search`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import InvalidValueError

__all__ = [
    "EQ",
    "EXPERIMENT_SEARCH",
    "GE",
    "GT",
    "ILIKE",
    "IN",
    "IS_NOT_NULL",
    "IS_NULL",
    "LE",
    "LIKE",
    "LT",
    "MODEL_VERSION_SEARCH",
    "NE",
    "NOT_IN",
    "REGISTERED_MODEL_SEARCH",
    "RUN_SEARCH",
    "Comparison",
    "Entity",
    "OrderBy",
    "SearchError",
    "SearchSchema",
    "Value",
    "attribute_specs",
    "parse_filter",
    "parse_order_by",
]


class SearchError(InvalidValueError):
    """A filter, order_by, page token or max_results MLflow would answer with
    INVALID_PARAMETER_VALUE; the message says what is wrong and where."""


# --- Parsed forms ------------------------------------------------------------------------

Entity = Literal["metric", "param", "tag", "attribute", "dataset"]
Value = float | int | str | tuple[str, ...] | None

EQ, NE, LT, LE, GT, GE = "=", "!=", "<", "<=", ">", ">="
LIKE, ILIKE, IN, NOT_IN, IS_NULL, IS_NOT_NULL = (
    "LIKE",
    "ILIKE",
    "IN",
    "NOT IN",
    "IS NULL",
    "IS NOT NULL",
)
_ALL_OPS = (EQ, NE, LT, LE, GT, GE, LIKE, ILIKE, IN, NOT_IN, IS_NULL, IS_NOT_NULL)
_NUMERIC_OPS = frozenset({EQ, NE, LT, LE, GT, GE})
_STRING_OPS = frozenset({EQ, NE, LIKE, ILIKE})
_LIST_OPS = frozenset({IN, NOT_IN})
_NULL_OPS = frozenset({IS_NULL, IS_NOT_NULL})


@dataclass(frozen=True)
class Comparison:
    """One ``<entity>.<key> <op> <value>`` of a filter. `key` is canonical (aliases such as
    ``created`` are resolved); `value` is a float for metrics, an int for numeric
    attributes, a str for strings and patterns, a tuple for IN lists, None for IS NULL."""

    entity: Entity
    key: str
    op: str
    value: Value


@dataclass(frozen=True)
class OrderBy:
    entity: Entity
    key: str
    ascending: bool = True


@dataclass(frozen=True)
class _Attribute:
    key: str  # canonical
    numeric: bool
    ops: frozenset[str]


@dataclass(frozen=True)
class SearchSchema:
    """What one MLflow search accepts: entity prefixes, attributes, comparators."""

    subject: str
    prefixes: Mapping[str, Entity]
    attributes: Mapping[str, _Attribute]
    entity_ops: Mapping[Entity, frozenset[str]]
    order_attributes: Mapping[str, str]
    order_entities: frozenset[Entity] = frozenset({"attribute"})
    dataset_keys: frozenset[str] = frozenset()
    unsupported: Mapping[str, str] = field(default_factory=dict)


def attribute_specs(*specs: tuple[tuple[str, ...], bool, frozenset[str]]) -> dict[str, _Attribute]:
    """Attributes by every spelling; the first spelling is the canonical key."""
    table: dict[str, _Attribute] = {}
    for names, numeric, ops in specs:
        attribute = _Attribute(names[0], numeric, ops)
        for name in names:
            table[name] = attribute
    return table


_ATTRIBUTE_PREFIXES: dict[str, Entity] = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
}
_TAG_PREFIXES: dict[str, Entity] = {"tag": "tag", "tags": "tag"}
_RUN_NAMES = ("run_name", "run name", "Run name", "Run Name")
_START_TIMES = ("start_time", "created", "Created")

RUN_SEARCH = SearchSchema(
    subject="runs",
    prefixes={
        "metric": "metric",
        "metrics": "metric",
        "parameter": "param",
        "parameters": "param",
        "param": "param",
        "params": "param",
        **_TAG_PREFIXES,
        **_ATTRIBUTE_PREFIXES,
        "run": "attribute",
        "dataset": "dataset",
        "datasets": "dataset",
    },
    # IN lists are accepted on every string attribute (MLflow takes them on run_id only).
    attributes=attribute_specs(
        (("run_id",), False, _STRING_OPS | _LIST_OPS),
        (_RUN_NAMES, False, _STRING_OPS | _LIST_OPS),
        (("status",), False, _STRING_OPS | _LIST_OPS),
        (("user_id",), False, _STRING_OPS | _LIST_OPS),
        (_START_TIMES, True, _NUMERIC_OPS),
        (("end_time",), True, _NUMERIC_OPS),
    ),
    entity_ops={
        "metric": _NUMERIC_OPS,
        "param": _STRING_OPS | _NULL_OPS,
        "tag": _STRING_OPS | _NULL_OPS,
        "dataset": _STRING_OPS | _LIST_OPS,
    },
    order_attributes={
        **{name: "run_name" for name in _RUN_NAMES},
        **{name: "start_time" for name in _START_TIMES},
        "run_id": "run_id",
        "status": "status",
        "user_id": "user_id",
        "end_time": "end_time",
    },
    order_entities=frozenset({"metric", "param", "tag", "attribute"}),
    dataset_keys=frozenset({"name", "digest", "context"}),
    unsupported={
        "artifact_uri": "runs cannot be searched or sorted by artifact_uri on this server"
    },
)

EXPERIMENT_SEARCH = SearchSchema(
    subject="experiments",
    prefixes={**_ATTRIBUTE_PREFIXES, **_TAG_PREFIXES},
    attributes=attribute_specs(
        (("name",), False, _STRING_OPS),
        (("creation_time",), True, _NUMERIC_OPS),
        (("last_update_time",), True, _NUMERIC_OPS),
    ),
    entity_ops={"tag": _STRING_OPS | _NULL_OPS},
    order_attributes={
        "name": "name",
        "experiment_id": "experiment_id",
        "creation_time": "creation_time",
        "last_update_time": "last_update_time",
    },
)

REGISTERED_MODEL_SEARCH = SearchSchema(
    subject="registered models",
    prefixes={**_ATTRIBUTE_PREFIXES, **_TAG_PREFIXES},
    attributes=attribute_specs((("name",), False, _STRING_OPS)),
    entity_ops={"tag": _STRING_OPS},
    # `timestamp` is MLflow's older spelling of last_updated_timestamp.
    order_attributes={
        "name": "name",
        "timestamp": "last_updated_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
        "creation_timestamp": "creation_timestamp",
    },
)

MODEL_VERSION_SEARCH = SearchSchema(
    subject="model versions",
    prefixes={**_ATTRIBUTE_PREFIXES, **_TAG_PREFIXES},
    attributes=attribute_specs(
        (("name",), False, _STRING_OPS),
        (("run_id",), False, _STRING_OPS | {IN}),
        (("source_path",), False, _STRING_OPS),
        (("version_number",), True, _NUMERIC_OPS),
    ),
    entity_ops={"tag": _STRING_OPS},
    order_attributes={
        "name": "name",
        "version_number": "version_number",
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
    },
)


# --- Parsing -----------------------------------------------------------------------------


def parse_filter(filter_string: str | None, schema: SearchSchema) -> list[Comparison]:
    """The comparisons of a filter, validated against the schema; none for an empty one."""
    if filter_string is None or not filter_string.strip():
        return []
    scanner = _Scanner(filter_string, "filter", field="filter")
    comparisons = [_read_comparison(scanner, schema)]
    while not scanner.at_end():
        position = scanner.pos
        word = scanner.read_word()
        if word == "AND":
            if scanner.at_end():
                raise scanner.error("expected a comparison after AND")
            comparisons.append(_read_comparison(scanner, schema))
        elif word == "OR":
            raise scanner.error(
                "OR is not supported; comparisons can only be joined with AND", position
            )
        else:
            raise scanner.error(
                f"expected AND between comparisons, got {scanner.snippet(position)}", position
            )
    return comparisons


def parse_order_by(order_by: Sequence[str] | None, schema: SearchSchema) -> list[OrderBy]:
    """Each ``<identifier> [ASC|DESC]`` clause, validated; a key may appear only once."""
    parsed: list[OrderBy] = []
    seen: set[tuple[Entity, str]] = set()
    for clause in order_by or ():
        scanner = _Scanner(clause, "order_by clause", field="order_by")
        if scanner.at_end():
            raise scanner.error("expected a column to order by")
        identifier = scanner.read_identifier()
        entity, key = _resolve_order_key(scanner, identifier, schema)
        ascending = True
        if not scanner.at_end():
            position = scanner.pos
            word = scanner.read_word()
            if word not in ("ASC", "DESC"):
                raise scanner.error(
                    f"expected ASC or DESC after the column, got {scanner.snippet(position)}",
                    position,
                )
            ascending = word == "ASC"
            if not scanner.at_end():
                raise scanner.error(
                    f"unexpected {scanner.snippet(scanner.pos)} after {word}", scanner.pos
                )
        if (entity, key) in seen:
            raise SearchError(
                f"order_by contains duplicate fields: {list(order_by or ())}", field="order_by"
            )
        seen.add((entity, key))
        parsed.append(OrderBy(entity, key, ascending))
    return parsed


@dataclass(frozen=True)
class _Identifier:
    prefix: str | None
    key: str
    position: int
    key_position: int
    text: str


# What a comparison's value must be: a metric's float, an attribute's integer, a string.
_ValueKind = Literal["float", "int", "string"]


@dataclass(frozen=True)
class _Token:
    kind: Literal["string", "number", "list", "word"]
    value: Any
    position: int
    text: str


_BARE_WORD = re.compile(r"[A-Za-z_]\w*")
# Unquoted keys: what MLflow's own key rules allow, except spaces.
_BARE_KEY = re.compile(r"[\w.\-/:]+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_SNIPPET = re.compile(r"'[^']*'?|\"[^\"]*\"?|`[^`]*`?|[^\s,()'\"`]+|\S")
_QUOTES = {"'": "single-quoted", '"': "double-quoted", "`": "backtick-quoted"}


class _Scanner:
    """A cursor over one filter or order_by clause, with errors that point into it."""

    def __init__(self, text: str, what: str, *, field: str) -> None:
        self.text = text
        self.what = what
        self.field = field
        self.pos = 0

    def error(self, reason: str, position: int | None = None) -> SearchError:
        at = self.pos if position is None else position
        where = "at the end" if at >= len(self.text.rstrip()) else f"at character {at + 1}"
        return SearchError(
            f"Invalid {self.what} {self.text!r}: {reason} ({where})", field=self.field
        )

    def snippet(self, position: int) -> str:
        """The token starting at `position`, quoted, for messages."""
        match = _SNIPPET.match(self.text, position)
        return repr(match.group()[:30]) if match else "the end"

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def read_word(self) -> str:
        """The next keyword, upper-cased; an empty string when there is none."""
        self.skip_space()
        match = _BARE_WORD.match(self.text, self.pos)
        if match is None:
            return ""
        self.pos = match.end()
        return match.group().upper()

    def read_quoted(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise self.error(f"unterminated {_QUOTES[quote]} text", start)
            parts.append(self.text[self.pos : end])
            self.pos = end + 1
            if self.peek() != quote:
                return "".join(parts)
            # A doubled quote stands for one quote character.
            parts.append(quote)
            self.pos += 1

    def read_identifier(self) -> _Identifier:
        self.skip_space()
        start = self.pos
        char = self.peek()
        if char in ("`", '"'):
            first = self.read_quoted()
        elif (match := _BARE_WORD.match(self.text, self.pos)) is not None:
            first = match.group()
            self.pos = match.end()
        elif char == "(":
            raise self.error("parentheses are not supported; join comparisons with AND")
        else:
            raise self.error(
                "expected an identifier such as metrics.<name>, params.<name>, tags.<name> "
                f"or an attribute, got {self.snippet(start)}"
            )
        if self.peek() != ".":
            return _Identifier(None, first, start, start, self.text[start : self.pos])
        self.pos += 1
        key_start = self.pos
        char = self.peek()
        if char in _QUOTES:
            key = self.read_quoted()
        elif (match := _BARE_KEY.match(self.text, self.pos)) is not None:
            key = match.group()
            self.pos = match.end()
        else:
            raise self.error(
                f"expected a name after '{first}.'; quote names holding spaces or other "
                "special characters with backticks or double quotes"
            )
        if not key:
            raise self.error("the name must not be empty", key_start)
        return _Identifier(first, key, start, key_start, self.text[start : self.pos])

    def read_operator(self, identifier: _Identifier) -> tuple[str, int]:
        self.skip_space()
        start = self.pos
        two = self.text[self.pos : self.pos + 2]
        if two in (NE, LE, GE):
            self.pos += 2
            return two, start
        if two == "==":
            raise self.error("'==' is not a comparator; use '='", start)
        if two == "<>":
            raise self.error("'<>' is not a comparator; use '!='", start)
        if self.peek() in (EQ, LT, GT):
            self.pos += 1
            return self.text[start], start
        word = self.read_word()
        if word in (LIKE, ILIKE, IN):
            return word, start
        if word == "NOT":
            if self.read_word() != "IN":
                raise self.error("expected IN after NOT", self.pos)
            return NOT_IN, start
        if word == "IS":
            after_is = self.read_word()
            if after_is == "NULL":
                return IS_NULL, start
            if after_is == "NOT" and self.read_word() == "NULL":
                return IS_NOT_NULL, start
            raise self.error("expected NULL or NOT NULL after IS", start)
        self.pos = start
        expected = f"expected a comparator ({', '.join(_ALL_OPS)}) after {identifier.text}"
        if self.at_end():
            raise self.error(expected)
        raise self.error(f"{expected}, got {self.snippet(start)}", start)

    def read_value(self, op: str) -> _Token:
        if self.at_end():
            raise self.error(f"expected a value after {op}")
        start = self.pos
        char = self.peek()
        if char in ("'", '"'):
            text = self.read_quoted()
            return _Token("string", text, start, self.text[start : self.pos])
        if char == "(":
            return self._read_list()
        if (match := _NUMBER.match(self.text, self.pos)) is not None:
            self.pos = match.end()
            if (after := self.peek()) and (after.isalnum() or after in "._"):
                raise self.error(f"invalid number {self.snippet(start)}", start)
            return _Token("number", match.group(), start, match.group())
        if (match := _BARE_WORD.match(self.text, self.pos)) is not None:
            self.pos = match.end()
            return _Token("word", match.group(), start, match.group())
        raise self.error(f"expected a value after {op}, got {self.snippet(start)}", start)

    def _read_list(self) -> _Token:
        start = self.pos
        self.pos += 1
        items: list[str] = []
        while True:
            if self.at_end():
                raise self.error("unterminated list", start)
            if self.peek() == ")" and items:
                break
            if self.peek() not in ("'", '"'):
                if self.peek() == ")":
                    raise self.error("expected a non-empty list of quoted strings", start)
                raise self.error(
                    f"lists hold quoted strings, got {self.snippet(self.pos)}", self.pos
                )
            items.append(self.read_quoted())
            if self.at_end():
                raise self.error("unterminated list", start)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                raise self.error(
                    f"expected ',' or ')' in the list, got {self.snippet(self.pos)}", self.pos
                )
        self.pos += 1
        return _Token("list", tuple(items), start, self.text[start : self.pos])


def _resolve_entity(
    scanner: _Scanner, identifier: _Identifier, schema: SearchSchema
) -> tuple[Entity, str]:
    if identifier.prefix is None:
        return "attribute", identifier.key
    entity = schema.prefixes.get(identifier.prefix)
    if entity is None:
        raise scanner.error(
            f"invalid entity type '{identifier.prefix}' for {schema.subject}; valid prefixes "
            f"are {', '.join(sorted(schema.prefixes))}",
            identifier.position,
        )
    return entity, identifier.key


def _unsupported(scanner: _Scanner, identifier: _Identifier, schema: SearchSchema) -> None:
    if (reason := schema.unsupported.get(identifier.key)) is not None:
        raise scanner.error(reason, identifier.key_position)


def _resolve_order_key(
    scanner: _Scanner, identifier: _Identifier, schema: SearchSchema
) -> tuple[Entity, str]:
    entity, key = _resolve_entity(scanner, identifier, schema)
    if entity not in schema.order_entities:
        raise scanner.error(f"{schema.subject} cannot be ordered by {entity}s", identifier.position)
    if entity == "attribute":
        _unsupported(scanner, identifier, schema)
        canonical = schema.order_attributes.get(key)
        if canonical is None:
            raise scanner.error(
                f"invalid order_by key '{key}' for {schema.subject}; valid keys are "
                f"{', '.join(sorted(schema.order_attributes))}",
                identifier.key_position,
            )
        return entity, canonical
    return entity, key


def _read_comparison(scanner: _Scanner, schema: SearchSchema) -> Comparison:
    identifier = scanner.read_identifier()
    entity, key = _resolve_entity(scanner, identifier, schema)
    kind: _ValueKind = "float" if entity == "metric" else "string"
    if entity == "attribute":
        _unsupported(scanner, identifier, schema)
        attribute = schema.attributes.get(key)
        if attribute is None:
            raise scanner.error(
                f"invalid attribute key '{key}' for {schema.subject}; valid keys are "
                f"{', '.join(sorted(schema.attributes))}",
                identifier.key_position,
            )
        key, ops = attribute.key, attribute.ops
        kind = "int" if attribute.numeric else "string"
        label = f"attribute '{key}'"
    else:
        if entity == "dataset" and key not in schema.dataset_keys:
            raise scanner.error(
                f"invalid dataset key '{key}'; valid keys are "
                f"{', '.join(sorted(schema.dataset_keys))}",
                identifier.key_position,
            )
        ops = schema.entity_ops[entity]
        label = f"{entity} '{key}'"
    op, op_position = scanner.read_operator(identifier)
    if op not in ops:
        raise scanner.error(
            f"invalid comparator '{op}' for {label}; expected one of "
            f"{', '.join(o for o in _ALL_OPS if o in ops)}",
            op_position,
        )
    if op in _NULL_OPS:
        return Comparison(entity, key, op, None)
    token = scanner.read_value(op)
    return Comparison(entity, key, op, _typed_value(scanner, token, op, label, kind))


def _typed_value(scanner: _Scanner, token: _Token, op: str, label: str, kind: _ValueKind) -> Value:
    if op in _LIST_OPS:
        if token.kind != "list":
            raise scanner.error(
                f"{op} expects a parenthesized list of quoted strings, got {token.text}",
                token.position,
            )
        return tuple(token.value)
    if token.kind == "list":
        raise scanner.error(f"a list can only follow IN or NOT IN, not {op}", token.position)
    if token.kind == "word" and token.value.upper() == "NULL":
        raise scanner.error("compare with NULL using IS NULL or IS NOT NULL", token.position)
    if kind != "string":
        if token.kind != "number":
            raise scanner.error(
                f"expected a numeric value for {label}, got {token.text}", token.position
            )
        if kind == "float":
            return float(token.value)
        return _integer(scanner, token, label)
    if token.kind != "string":
        raise scanner.error(
            f"expected a quoted string value for {label} (e.g. 'my-value'), got {token.text}",
            token.position,
        )
    value: str = token.value
    if op in (LIKE, ILIKE) and _trailing_escape(value):
        raise scanner.error(
            "the pattern ends with a lone backslash; write '\\\\' for a literal backslash",
            token.position,
        )
    return value


def _integer(scanner: _Scanner, token: _Token, label: str) -> int:
    text: str = token.value
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text)
    if not math.isfinite(number) or not number.is_integer():
        raise scanner.error(f"expected an integer value for {label}, got {text}", token.position)
    return int(number)


def _trailing_escape(pattern: str) -> bool:
    backslashes = len(pattern) - len(pattern.rstrip("\\"))
    return backslashes % 2 == 1
