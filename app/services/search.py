"""MLflow's search language (`filter_string`, `order_by`, page tokens), compiled to SQL.
The MLflow surface uses it for its searches, GraphQL for `Model.candidates(filter)`.

The MLflow searches map onto our tables:

=====================  =================  ======================================
MLflow search          rows               compiled by
=====================  =================  ======================================
runs                   `Candidate`        `compile_run_filter`, `compile_run_order_by`
experiments            `Model`            `compile_experiment_filter`, `..._order_by`
registered models      `Model`            `compile_registered_model_filter`, `..._order_by`
model versions         `ModelVersion`     `compile_model_version_filter`, `..._order_by`
logged models          `LoggedModel`      `app.mlflow.logged_models.compile_filter`
=====================  =================  ======================================

Every filter compiles to conditions on the row's own table: correlated EXISTS (or IN)
subqueries reach metrics, params and metadata through their primary keys, so a caller
writes ``select(Candidate).where(scope..., *conditions).order_by(*orders)`` and nothing
is filtered in Python. The caller adds the scope (project, model, lifecycle state,
`registered`); these functions add only what the strings ask for.

Grammar: comparisons joined by AND (MLflow has no OR and no parentheses)::

    metrics.accuracy > 0.9 AND params.optimizer = 'adam' AND tags.`team name` LIKE 'vis%'
    attributes.status IN ('FINISHED', 'FAILED') AND run_name ILIKE '%baseline%'
    params.seed IS NULL

An identifier is ``<entity>.<key>``, or a bare ``<key>`` for an attribute. Keys holding
characters other than letters, digits, ``_ . - / :`` are quoted with backticks or double
quotes. String values take single or double quotes (a quote inside is doubled: ``'it''s'``);
numbers may be signed and use exponents. Keywords are case-insensitive, entity
prefixes and keys are not.

Where MLflow leaves the meaning open, this module decides as follows:

* LIKE is case-sensitive and ILIKE is not, on SQLite as on PostgreSQL. ``%`` and ``_`` are
  wildcards and a backslash makes the next character literal (``'50\\%'``). SQLite's own
  LIKE ignores ASCII case, so there a case-sensitive LIKE compiles to GLOB with the
  pattern translated (see `_Like`). SQLite folds only ASCII letters for ILIKE.
* NaN metrics are stored as NULL with `is_nan` set; they follow IEEE comparisons: no
  ordered comparison or ``=`` matches NaN, ``!=`` does.
* ``!=`` on a param or tag only matches rows that have the key (MLflow's inner join); use
  ``IS NULL`` for rows without it. The one exception is the registry's prompt tag,
  handled as MLflow's registry store does (see `compile_registered_model_filter`).
* ``dataset.name``, ``dataset.digest`` and ``dataset.context`` match a run that has at least
  one dataset input whose name, digest or ``mlflow.data.context`` tag compares true (MLflow's
  inner join): ``dataset.name != 'x'`` matches a run with any other dataset input.
* Sorting puts values first, then NaN metrics, then rows without the metric, param, tag
  or attribute, whichever the direction (MLflow's order). Strings sort by code point on
  every backend (``COLLATE "C"`` on PostgreSQL), as MLflow's Python sort does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from app.errors import InvalidValueError
from app.models import (
    Candidate,
    CandidateInput,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateParam,
    Model,
    ModelMetadata,
    ModelVersion,
    ModelVersionMetadata,
    User,
)

__all__ = [
    "EXPERIMENT_SEARCH",
    "IS_PROMPT_TAG",
    "MODEL_VERSION_SEARCH",
    "REGISTERED_MODEL_SEARCH",
    "RUN_NAME_TAG",
    "RUN_SEARCH",
    "SEARCH_MAX_RESULTS_DEFAULT",
    "SEARCH_MAX_RESULTS_THRESHOLD",
    "SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT",
    "SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD",
    "SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT",
    "SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD",
    "Comparison",
    "OrderBy",
    "SearchError",
    "SearchSchema",
    "compile_experiment_filter",
    "compile_experiment_order_by",
    "compile_model_version_filter",
    "compile_model_version_order_by",
    "compile_registered_model_filter",
    "compile_registered_model_order_by",
    "compile_run_filter",
    "compile_run_order_by",
    "datetime_to_ms",
    "decode_page_token",
    "encode_page_token",
    "like_to_glob",
    "metric_value_condition",
    "ms_to_datetime",
    "next_page_token",
    "parse_filter",
    "parse_order_by",
    "resolve_max_results",
]

# --- Limits (MLflow's) -------------------------------------------------------------------

# Runs and experiments.
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50_000
SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT = 100
SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD = 1000
SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT = 10_000
SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD = 200_000

# The run tag MLflow keeps the run name in; here it is the candidate's name column.
RUN_NAME_TAG = "mlflow.runName"
# The tag that marks a registered model (and its versions) as a prompt.
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"


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


def _integer_condition(
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


def _direction(expression: sa.SQLColumnExpression[Any], ascending: bool) -> sa.ColumnElement[Any]:
    """Ascending or descending with NULLs (missing values) last either way."""
    ordered: sa.ColumnElement[Any] = expression.asc() if ascending else expression.desc()
    last: sa.ColumnElement[Any] = sa.nulls_last(ordered)
    return last


def _key_value_exists(
    table: type[CandidateParam] | type[CandidateMetadata],
    key: str,
    op: str,
    value: Value,
) -> sa.ColumnElement[bool]:
    """A param or tag comparison: the candidate has the key, with a matching value."""
    found = sa.exists().where(table.candidate_id == Candidate.id, table.name == key)
    if op == IS_NULL:
        return ~found
    if op == IS_NOT_NULL:
        return found
    return found.where(string_condition(table.value, op, value))


# --- Runs (candidates) -------------------------------------------------------------------


def compile_run_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Candidate` for an MLflow run filter."""
    return [run_condition(c) for c in parse_filter(filter_string, RUN_SEARCH)]


def run_condition(comparison: Comparison) -> sa.ColumnElement[bool]:
    """One comparison on `Candidate`: parsed from a filter, or built by another surface
    (GraphQL's structured candidate filter) so that both mean the same."""
    entity, key, op, value = comparison.entity, comparison.key, comparison.op, comparison.value
    if entity == "metric":
        assert isinstance(value, float)
        return _metric_condition(key, op, value)
    if entity == "param":
        return _key_value_exists(CandidateParam, key, op, value)
    if entity == "tag":
        if key == RUN_NAME_TAG:
            return _run_name_condition(op, value)
        return _key_value_exists(CandidateMetadata, key, op, value)
    if entity == "dataset":
        return _dataset_condition(key, op, value)
    if key in ("start_time", "end_time"):
        assert isinstance(value, int)
        return _integer_condition(getattr(Candidate, key), op, value)
    if key == "run_name":
        return _run_name_condition(op, value)
    if key == "run_id":
        return string_condition(Candidate.eid, op, value)
    if key == "status":
        return string_condition(_status_text(), op, value)
    # user_id: MLflow's user id is a user name; here it is the candidate's user.
    return (
        sa.exists()
        .where(User.id == Candidate.user_id)
        .where(string_condition(User.username, op, value))
    )


# The input tag in which MLflow's client records a dataset's role ("training", "eval").
DATASET_CONTEXT_TAG = "mlflow.data.context"


def _dataset_condition(key: str, op: str, value: Value) -> sa.ColumnElement[bool]:
    """The candidate has a dataset input (stored as MLflow sent it) whose name, digest or
    context matches."""
    found = sa.exists().where(
        CandidateInput.candidate_id == Candidate.id, CandidateInput.kind == "dataset_input"
    )
    if key == "context":
        return found.where(_DatasetContextMatch(CandidateInput.payload, op, value))
    return found.where(
        string_condition(CandidateInput.payload[("dataset", key)].as_string(), op, value)
    )


class _DatasetContextMatch(sa.ColumnElement[bool]):
    """Whether one of a dataset input's tags is `mlflow.data.context` with a matching value.
    The tags are a JSON list inside the stored input, read with each backend's JSON table
    function; entries that are not ``{"key", "value"}`` objects match nothing."""

    __visit_name__ = "mlflow_search_dataset_context"
    # The comparison is rendered at compile time, so statements holding one are not cached.
    inherit_cache = False
    _is_implicitly_boolean = True

    def __init__(self, payload: sa.SQLColumnExpression[Any], op: str, value: Value) -> None:
        self.payload = coercions.expect(roles.ExpressionElementRole, payload)
        # Not `op` nor `comparator`: ColumnElement already has both.
        self.search_op = op
        self.search_value = value
        self.type = sa.Boolean()

    @property
    def _from_objects(self) -> Any:
        return self.payload._from_objects

    def render(self, compiler: SQLCompiler, source: str, key: str, value: str, **kw: Any) -> str:
        condition = sa.and_(
            sa.literal_column(key, sa.String()) == DATASET_CONTEXT_TAG,
            string_condition(
                sa.literal_column(value, sa.String()), self.search_op, self.search_value
            ),
        )
        return f"EXISTS (SELECT 1 FROM {source} WHERE {compiler.process(condition, **kw)})"


@compiles(_DatasetContextMatch, "sqlite")
def _compile_dataset_context_sqlite(
    element: _DatasetContextMatch, compiler: SQLCompiler, **kw: Any
) -> str:
    payload = compiler.process(element.payload, **kw)
    tags = f"json_extract({payload}, '$.tags')"
    is_object = "dataset_tag.type = 'object'"
    return element.render(
        compiler,
        f"json_each(CASE WHEN json_type({payload}, '$.tags') = 'array' THEN {tags} "
        "ELSE '[]' END) AS dataset_tag",
        f"CASE WHEN {is_object} THEN json_extract(dataset_tag.value, '$.key') END",
        f"CASE WHEN {is_object} THEN json_extract(dataset_tag.value, '$.value') END",
        **kw,
    )


@compiles(_DatasetContextMatch, "postgresql")
def _compile_dataset_context_postgresql(
    element: _DatasetContextMatch, compiler: SQLCompiler, **kw: Any
) -> str:
    tags = f"(({compiler.process(element.payload, **kw)})::json -> 'tags')"
    is_object = "json_typeof(dataset_tag.value) = 'object'"
    return element.render(
        compiler,
        f"json_array_elements(CASE WHEN json_typeof({tags}) = 'array' THEN {tags} "
        "ELSE '[]'::json END) AS dataset_tag",
        f"CASE WHEN {is_object} THEN dataset_tag.value ->> 'key' END",
        f"CASE WHEN {is_object} THEN dataset_tag.value ->> 'value' END",
        **kw,
    )


def _status_text() -> sa.ColumnElement[str]:
    # The enum column would refuse to bind an unknown status ('finished'); MLflow compares
    # the text, so a wrong case simply matches nothing.
    return sa.type_coerce(Candidate.status, sa.String(32))


def _run_name_condition(op: str, value: Value) -> sa.ColumnElement[bool]:
    if op == IS_NULL:
        return Candidate.name.is_(None)
    if op == IS_NOT_NULL:
        return Candidate.name.is_not(None)
    return string_condition(Candidate.name, op, value)


def _metric_condition(key: str, op: str, value: float) -> sa.ColumnElement[bool]:
    metric = CandidateLatestMetric
    return sa.exists().where(
        metric.candidate_id == Candidate.id,
        # Lets PostgreSQL drive the search from the (model_id, name, value) index.
        metric.model_id == Candidate.model_id,
        metric.name == key,
        metric_value_condition(metric.value, metric.is_nan, op, value),
    )


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


def compile_run_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """ORDER BY expressions on `Candidate` for MLflow's run order_by, then MLflow's
    tie-breakers: start time (newest first, unless ordered by already), then run id.

    Metrics sort numbers (infinities included) first, then NaN, then candidates without
    the metric; params, tags and attributes sort values first, missing ones last."""
    clauses: list[sa.ColumnElement[Any]] = []
    ordered_by_start_time = False
    for order in parse_order_by(order_by, RUN_SEARCH):
        key = order.key
        if order.entity == "metric":
            metric = CandidateLatestMetric
            where = (metric.candidate_id == Candidate.id, metric.name == key)
            rank = sa.select(sa.case((metric.is_nan, 1), else_=0)).where(*where).scalar_subquery()
            value = sa.select(metric.value).where(*where).scalar_subquery()
            clauses.append(sa.func.coalesce(rank, 2).asc())
            clauses.append(_direction(value, order.ascending))
            continue
        expression: sa.SQLColumnExpression[Any]
        if order.entity == "param":
            expression = CodepointOrder(_key_value_scalar(CandidateParam, key))
        elif order.entity == "tag" and key != RUN_NAME_TAG:
            expression = CodepointOrder(_key_value_scalar(CandidateMetadata, key))
        elif order.entity == "tag" or key == "run_name":
            expression = CodepointOrder(Candidate.name)
        elif key in ("start_time", "end_time"):
            ordered_by_start_time = ordered_by_start_time or key == "start_time"
            expression = getattr(Candidate, key)
        elif key == "run_id":
            expression = Candidate.eid
        elif key == "status":
            expression = CodepointOrder(_status_text())
        else:  # user_id
            expression = CodepointOrder(
                sa.select(User.username).where(User.id == Candidate.user_id).scalar_subquery()
            )
        clauses.append(_direction(expression, order.ascending))
    if not ordered_by_start_time:
        clauses.append(_direction(Candidate.start_time, ascending=False))
    clauses.append(Candidate.eid.asc())
    return clauses


async def fetch_runs(
    session: AsyncSession, query: sa.Select[Any], order_by: Sequence[str] | None, page: Page
) -> list[Candidate]:
    """A page of `query` (candidates, filtered, unordered) in MLflow's run order.

    Ordered by a metric first, the page is read in two parts, so that PostgreSQL walks
    the (model_id, name, value) index of latest metrics and stops after the page instead
    of sorting every matching candidate: first the candidates holding a number for the
    metric, by value; only when the page reaches past them, the rest (NaN, then
    missing), which is what `compile_run_order_by` orders after the numbers anyway."""
    orders = compile_run_order_by(order_by)
    parsed = parse_order_by(order_by, RUN_SEARCH)
    if not parsed or parsed[0].entity != "metric":
        return list(await session.scalars(page.of(query.order_by(*orders))))
    leading = parsed[0]
    metric = aliased(CandidateLatestMetric)
    valued = sa.and_(
        metric.candidate_id == Candidate.id,
        metric.model_id == Candidate.model_id,
        metric.name == leading.key,
        metric.value.is_not(None),
    )
    by_value = metric.value.asc() if leading.ascending else metric.value.desc()
    # compile_run_order_by gives a metric two clauses (rank, value); the tie-breakers follow.
    tie_breakers = orders[2:]
    numbers = list(
        await session.scalars(page.of(query.join(metric, valued).order_by(by_value, *tie_breakers)))
    )
    wanted = page.size + 1
    if len(numbers) >= wanted:
        return numbers
    if numbers or page.offset == 0:
        valued_count = page.offset + len(numbers)
    else:  # the page starts past the numbers: how far past?
        valued_count = (
            await session.scalar(
                sa.select(sa.func.count()).select_from(query.join(metric, valued).subquery())
            )
            or 0
        )
    rest = query.where(~sa.exists().where(valued)).order_by(*orders)
    skipped = max(0, page.offset - valued_count)
    numbers += await session.scalars(rest.offset(skipped).limit(wanted - len(numbers)))
    return numbers


def _key_value_scalar(
    table: type[CandidateParam] | type[CandidateMetadata], key: str
) -> sa.ScalarSelect[Any]:
    return (
        sa.select(table.value)
        .where(table.candidate_id == Candidate.id, table.name == key)
        .scalar_subquery()
    )


# --- Experiments (models) ----------------------------------------------------------------


def compile_experiment_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Model` for an MLflow experiment filter: ``name`` is the display name,
    ``creation_time``/``last_update_time`` are milliseconds, tags are model metadata."""
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in parse_filter(filter_string, EXPERIMENT_SEARCH):
        key, op, value = comparison.key, comparison.op, comparison.value
        if comparison.entity == "tag":
            conditions.append(_model_tag_condition(key, op, value))
        elif key == "name":
            conditions.append(string_condition(Model.display_name, op, value))
        else:
            assert isinstance(value, int)
            column = Model.created_at if key == "creation_time" else Model.updated_at
            conditions.append(epoch_ms_condition(column, op, value))
    return conditions


def _model_tag_condition(key: str, op: str, value: Value) -> sa.ColumnElement[bool]:
    found = sa.exists().where(ModelMetadata.model_id == Model.id, ModelMetadata.name == key)
    if op == IS_NULL:
        return ~found
    if op == IS_NOT_NULL:
        return found
    return found.where(string_condition(ModelMetadata.value, op, value))


def compile_experiment_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `Model`; MLflow's default is creation time (newest first) then
    experiment id, and experiment id (descending) breaks ties otherwise."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(Model.display_name),
        "experiment_id": Model.iid,
        "creation_time": Model.created_at,
        "last_update_time": Model.updated_at,
    }
    orders = parse_order_by(
        order_by or ["creation_time DESC", "experiment_id ASC"], EXPERIMENT_SEARCH
    )
    clauses = [_direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "experiment_id" for o in orders):
        clauses.append(Model.iid.desc())
    clauses.append(Model.id.asc())
    return clauses


# --- Registered models (models) ----------------------------------------------------------


def _is_prompt_query(comparisons: Sequence[Comparison]) -> bool:
    """Whether the filter asks for prompts (MLflow's registry rule: the first comparison
    on the prompt tag decides; `= 'true'` or `!= 'false'` means prompts)."""
    for comparison in comparisons:
        if comparison.entity == "tag" and comparison.key == IS_PROMPT_TAG:
            value = str(comparison.value).lower()
            return (comparison.op == EQ and value == "true") or (
                comparison.op == NE and value == "false"
            )
    return False


def _without_prompt_filters(
    comparisons: Sequence[Comparison],
) -> tuple[list[Comparison], bool]:
    """The comparisons to apply and whether prompts are excluded.

    MLflow's registry returns normal models unless the filter asks for prompts, and the
    3.x client appends ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every search. Models
    do not carry that tag, so taken literally (the tag must exist) it would hide every
    model; like MLflow's store, comparisons on the tag are dropped and prompts (tag
    value 'true') excluded instead."""
    if _is_prompt_query(comparisons):
        return list(comparisons), False
    kept = [c for c in comparisons if not (c.entity == "tag" and c.key == IS_PROMPT_TAG)]
    return kept, True


def compile_registered_model_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Model` for an MLflow registered-model filter (``name`` is the display
    name). Prompts are excluded unless the filter asks for them, even with no filter."""
    comparisons, exclude_prompts = _without_prompt_filters(
        parse_filter(filter_string, REGISTERED_MODEL_SEARCH)
    )
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in comparisons:
        if comparison.entity == "tag":
            conditions.append(_model_tag_condition(comparison.key, comparison.op, comparison.value))
        else:
            conditions.append(string_condition(Model.display_name, comparison.op, comparison.value))
    if exclude_prompts:
        conditions.append(~_model_is_prompt(Model.id))
    return conditions


def _model_is_prompt(model_id: sa.SQLColumnExpression[int]) -> sa.ColumnElement[bool]:
    return sa.exists().where(
        ModelMetadata.model_id == model_id,
        ModelMetadata.name == IS_PROMPT_TAG,
        ModelMetadata.value == "true",
    )


def compile_registered_model_order_by(
    order_by: Sequence[str] | None,
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `Model`: name, last_updated_timestamp (or `timestamp`),
    creation_timestamp; the name (ascending) breaks ties, as in MLflow."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(Model.display_name),
        "last_updated_timestamp": Model.updated_at,
        "creation_timestamp": Model.created_at,
    }
    orders = parse_order_by(order_by, REGISTERED_MODEL_SEARCH)
    clauses = [_direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "name" for o in orders):
        clauses.append(_direction(columns["name"], ascending=True))
    clauses.append(Model.id.asc())
    return clauses


# --- Model versions ----------------------------------------------------------------------


# A version whose run was registered before holds that run's id in its metadata; its own
# candidate is a fresh one (see app/mlflow/registry.py).
SOURCE_RUN_ID_KEY = "mlflow.source.run_id"


def _version_run_id() -> sa.ColumnElement[str]:
    """The run id MLflow shows for a version: the recorded source run, else its candidate's."""
    recorded = (
        sa.select(ModelVersionMetadata.value)
        .where(
            ModelVersionMetadata.version_id == ModelVersion.id,
            ModelVersionMetadata.name == SOURCE_RUN_ID_KEY,
        )
        .scalar_subquery()
    )
    own = (
        sa.select(Candidate.eid)
        .where(Candidate.model_version_id == ModelVersion.id)
        .scalar_subquery()
    )
    return sa.func.coalesce(recorded, own)


def compile_model_version_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `ModelVersion` for an MLflow model-version filter: ``name`` is the
    model's display name, ``run_id`` the run id of the version's candidate,
    ``version_number`` the sequential number, ``source_path`` the source. Versions of
    prompts are excluded unless the filter asks for them."""
    comparisons, exclude_prompts = _without_prompt_filters(
        parse_filter(filter_string, MODEL_VERSION_SEARCH)
    )
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in comparisons:
        key, op, value = comparison.key, comparison.op, comparison.value
        if comparison.entity == "tag":
            conditions.append(
                sa.exists()
                .where(
                    ModelVersionMetadata.version_id == ModelVersion.id,
                    ModelVersionMetadata.name == key,
                )
                .where(string_condition(ModelVersionMetadata.value, op, value))
            )
        elif key == "name":
            conditions.append(
                ModelVersion.model_id.in_(
                    sa.select(Model.id).where(string_condition(Model.display_name, op, value))
                )
            )
        elif key == "run_id":
            conditions.append(string_condition(_version_run_id(), op, value))
        elif key == "source_path":
            conditions.append(string_condition(ModelVersion.source, op, value))
        else:  # version_number
            assert isinstance(value, int)
            conditions.append(_integer_condition(ModelVersion.number, op, value, bits=32))
    if exclude_prompts:
        conditions.append(~_model_is_prompt(ModelVersion.model_id))
        # MLflow marks a prompt's versions too; any marked version makes the model a prompt.
        sibling = aliased(ModelVersion)
        conditions.append(
            ~sa.exists().where(
                sibling.model_id == ModelVersion.model_id,
                ModelVersionMetadata.version_id == sibling.id,
                ModelVersionMetadata.name == IS_PROMPT_TAG,
                ModelVersionMetadata.value == "true",
            )
        )
    return conditions


def compile_model_version_order_by(
    order_by: Sequence[str] | None,
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `ModelVersion`; MLflow's default is last update (newest first), model
    name, version number (highest first); name then number break remaining ties."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(
            sa.select(Model.display_name).where(Model.id == ModelVersion.model_id).scalar_subquery()
        ),
        "version_number": ModelVersion.number,
        "creation_timestamp": ModelVersion.created_at,
        "last_updated_timestamp": ModelVersion.updated_at,
    }
    orders = parse_order_by(
        order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"],
        MODEL_VERSION_SEARCH,
    )
    clauses = [_direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "name" for o in orders):
        clauses.append(_direction(columns["name"], ascending=True))
    if not any(o.key == "version_number" for o in orders):
        clauses.append(ModelVersion.number.desc())
    clauses.append(ModelVersion.id.asc())
    return clauses


# --- Paging ------------------------------------------------------------------------------


def encode_page_token(offset: int) -> str:
    """An opaque token for the page starting at `offset` (base64 of ``{"offset": n}``)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"a page offset is a non-negative integer, not {offset!r}")
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def decode_page_token(token: str | None) -> int:
    """The offset a page token stands for; 0 without a token."""
    if not token:
        return 0
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        parsed = json.loads(raw)
    except (UnicodeError, binascii.Error, ValueError):
        raise SearchError(
            f"Invalid page token {token!r}: it is not a token this server issued",
            field="page_token",
        ) from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
        raise SearchError(
            f"Invalid page token {token!r}: it holds no valid offset", field="page_token"
        )
    return offset


@dataclass(frozen=True)
class Page:
    """One page of a search: the offset it starts at and how many rows it shows."""

    offset: int
    size: int

    @classmethod
    def requested(
        cls, max_results: int | None, page_token: str | None, *, default: int, threshold: int
    ) -> Page:
        size = resolve_max_results(max_results, default=default, threshold=threshold)
        return cls(offset=decode_page_token(page_token), size=size)

    def of(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """The query for this page, asking one row more to learn whether another follows."""
        return query.offset(self.offset).limit(self.size + 1)

    def split(self, rows: Sequence[T]) -> tuple[Sequence[T], str | None]:
        """The rows to show and the token of the next page (None on the last)."""
        return rows[: self.size], next_page_token(self.offset, self.size, len(rows))


T = TypeVar("T")


def next_page_token(offset: int, max_results: int, fetched: int) -> str | None:
    """The token of the following page when a query for ``max_results + 1`` rows from
    `offset` returned `fetched` rows; None on the last page."""
    return encode_page_token(offset + max_results) if fetched > max_results else None


def resolve_max_results(value: int | None, *, default: int, threshold: int) -> int:
    """The page size: `default` when not given; MLflow's message past `threshold`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SearchError(
            f"Invalid value for max_results. It must be a positive integer, but got {value!r}",
            field="max_results",
        )
    if value > threshold:
        raise SearchError(
            "Invalid value for request parameter max_results. It must be at most "
            f"{threshold}, but got value {value}",
            field="max_results",
        )
    return value
