"""Input rules shared by every service, matching MLflow's and GitLab's limits."""

from __future__ import annotations

import functools
import json
import math
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from app.errors import InvalidValueError

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 255
MAX_ALIAS_LENGTH = 255
# GitLab's model registry allows 10,000 characters (MLflow's columns hold 5,000): room for
# a model card, and markdown-it's slowest input of that length renders in a fraction of a
# second, where GitLab's 1 MiB issue limit would let one write take most of a minute.
MAX_DESCRIPTION_LENGTH = 10_000
# The most names one read or delete takes (columns of a table, models of a search): far
# beyond what a page shows, and well within the 32,767 values PostgreSQL takes a statement.
MAX_NAMES = 1_000
# What a BIGINT column holds: steps, timestamps, ids.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_KEY = re.compile(r"^[/\w.\- :]*$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
_SLUG_SEPARATORS = re.compile(r"[^a-z0-9.-]+")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_ALIAS = re.compile(r"^[\w-]+$")
_VERSION_LIKE_ALIAS = re.compile(r"^v(0|[1-9]\d*)$", re.IGNORECASE)


def key(value: str, *, kind: str = "key") -> str:
    """A param, metric or metadata name: MLflow's characters, no path escape, <= 250."""
    if not value:
        raise InvalidValueError(f"{kind} name must not be empty", field=kind)
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidValueError(
            f"{kind} name '{value[:50]}...' is longer than {MAX_KEY_LENGTH} characters", field=kind
        )
    if not _is_key(value):
        raise InvalidValueError(
            f"Invalid {kind} name: '{value}'. Names may only contain alphanumerics, "
            "underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).",
            field=kind,
        )
    return value


# A batch names the same few metrics a thousand times over.
@functools.lru_cache(maxsize=4096)
def _is_key(value: str) -> bool:
    return _KEY.match(value) is not None and not _escapes_its_path(value)


def names(values: Iterable[str], *, field: str) -> tuple[str, ...]:
    """Names a read or a delete is limited to, distinct and sorted (so the same set, in any
    order, is one batch for a loader): at most MAX_NAMES of them."""
    distinct = tuple(sorted(set(values)))
    if len(distinct) > MAX_NAMES:
        raise InvalidValueError(
            f"At most {MAX_NAMES} names are taken at once; {len(distinct)} were given",
            field=field,
        )
    return distinct


def _escapes_its_path(value: str) -> bool:
    normalized = posixpath.normpath(value)
    return normalized != value or normalized == "." or normalized.startswith(("..", "/"))


def param_value(name: str, value: str, *, truncate: bool = False) -> str:
    """A param value of at most 6,000 characters; a longer one is refused, or cut to its
    first 6,000 with `truncate` (what MLflow's server does by default)."""
    if truncate:
        return value[:MAX_PARAM_VALUE_LENGTH]
    if len(value) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidValueError(
            f"Param value for '{name}' is {len(value)} characters long; "
            f"the limit is {MAX_PARAM_VALUE_LENGTH}",
            field="params",
        )
    return value


def tag_value(name: str, value: str) -> str:
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidValueError(
            f"Tag value for '{name}' is {len(value)} characters long; "
            f"the limit is {MAX_TAG_VALUE_LENGTH}",
            field="tags",
        )
    return value


def metric_value(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(f"Metric '{name}' has a non-numeric value", field="metrics")
    return float(value)


def int64(value: Any, *, field: str) -> int:
    """An integer as MLflow sends one (a JSON number or a decimal string) that a BIGINT
    column holds: whole, and within the signed 64-bit range."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("not a whole number")
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidValueError(
            f"Invalid value {json.dumps(value)[:100]} for parameter '{field}' supplied: "
            "expected an integer",
            field=field,
        ) from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidValueError(
            f"Invalid value {number} for parameter '{field}' supplied: integers must lie "
            f"between {INT64_MIN} and {INT64_MAX}",
            field=field,
        )
    return number


def is_nan(value: float) -> bool:
    return math.isnan(value)


def slug(value: str) -> str:
    """A model name: lowercase letters, digits, `.`, `_` and `-`, alphanumeric at both ends."""
    if len(value) > MAX_NAME_LENGTH or not _SLUG.match(value):
        raise InvalidValueError(
            f"'{value}' is not a valid name: use at most {MAX_NAME_LENGTH} lowercase letters, "
            "digits, '.', '_' or '-', starting and ending with a letter or digit",
            field="name",
        )
    return value


def slugify(text: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """Turn free text into a slug: 'My Experiment' -> 'my_experiment'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    collapsed = _SLUG_SEPARATORS.sub("_", ascii_text.lower())
    trimmed = collapsed[:max_length].strip("._-")
    return trimmed or "model"


def display_name(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise InvalidValueError("name must not be empty", field="name")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidValueError(f"name is longer than {MAX_NAME_LENGTH} characters", field="name")
    return stripped


def semver(value: str) -> str:
    """A semantic version as semver.org defines it: '1.2.0', '2.0.0-rc.1+build.5'."""
    if len(value) > MAX_NAME_LENGTH or not _SEMVER.match(value):
        raise InvalidValueError(
            f"'{value}' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)",
            field="version",
        )
    return value


def alias(value: str) -> str:
    """An alias name as MLflow allows it: not empty, not `latest`, not like `v3`."""
    if not value:
        raise InvalidValueError("Alias name cannot be empty", field="alias")
    if len(value) > MAX_ALIAS_LENGTH:
        raise InvalidValueError(
            f"Alias name is longer than {MAX_ALIAS_LENGTH} characters", field="alias"
        )
    if not _ALIAS.match(value):
        raise InvalidValueError(
            f"Alias '{value}' must only contain alphanumerics, underscores or dashes",
            field="alias",
        )
    if value.lower() == "latest":
        raise InvalidValueError("'latest' is a reserved alias name", field="alias")
    if _VERSION_LIKE_ALIAS.match(value):
        raise InvalidValueError(
            f"Alias '{value}' cannot look like a version reference such as 'v1'", field="alias"
        )
    return value


def description(value: str | None) -> str | None:
    """A Markdown description of a project, model or version: at most 10,000 characters."""
    if value is not None and len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidValueError(
            f"description is {len(value)} characters long; the limit is {MAX_DESCRIPTION_LENGTH}",
            field="description",
        )
    return value


def metadata(items: Mapping[str, str]) -> dict[str, str]:
    """Metadata entries (tags): valid names, values within MLflow's tag limit."""
    return {key(name, kind="metadata"): tag_value(name, value) for name, value in items.items()}
