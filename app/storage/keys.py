"""Object keys: the one place that decides which artifact paths are acceptable.

A key is a relative POSIX path such as ``models/7/weights.bin``. Surfaces build keys from
user-supplied paths with `join_key`; every store validates each key again before use.
"""

from __future__ import annotations

import unicodedata

from app.errors import InvalidValueError

MAX_KEY_BYTES = 1024
"""S3's limit on a key, in UTF-8 bytes; applied to every store so both accept the same keys."""

MAX_SEGMENT_BYTES = 255
"""The usual file name limit (NAME_MAX), so a key valid on S3 is valid on a local disk too."""


def _control_character(value: str) -> str | None:
    for character in value:
        if unicodedata.category(character) == "Cc":
            return "NUL" if character == "\0" else f"control character U+{ord(character):04X}"
    return None


def _problem(value: str) -> str | None:
    """What makes `value` unacceptable as a key, or None when it is a valid key."""
    if not value:
        return "is empty"
    if (character := _control_character(value)) is not None:
        return f"contains a {character}"
    if "\\" in value:
        return "contains a backslash"
    if value.startswith("/"):
        return "is absolute (starts with /)"
    if len(value.encode()) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    for segment in value.split("/"):
        if not segment:
            return "has an empty segment (// or a trailing /)"
        if segment in {".", ".."}:
            return f"has a '{segment}' segment"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def validate_key(key: str, *, field: str = "key") -> str:
    """Return `key` unchanged, or raise InvalidValueError naming what is wrong with it."""
    if (problem := _problem(key)) is not None:
        raise InvalidValueError(f"{field} {key!r} {problem}", field=field)
    return key


def validate_prefix(prefix: str, *, field: str = "prefix") -> str:
    """Validate a listing prefix: empty, a key, or a key followed by one trailing ``/``."""
    if prefix and (problem := _problem(prefix.removesuffix("/"))) is not None:
        raise InvalidValueError(f"{field} {prefix!r} {problem}", field=field)
    return prefix


def join_key(prefix: str, relative_path: str, *, field: str = "path") -> str:
    """The key of `relative_path` (user input) under `prefix` (built by the service).

    Refuses ``..`` and ``.`` segments, absolute paths, empty segments, backslashes, NUL and
    other control characters, with an InvalidValueError whose `field` is `field`.
    """
    validate_key(relative_path, field=field)
    if not prefix:
        return relative_path
    return validate_key(f"{validate_key(prefix, field='prefix')}/{relative_path}", field=field)
