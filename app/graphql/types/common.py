"""Small types shared by the schema: 64-bit integers, key/value entries, sort direction,
and Markdown descriptions rendered to safe HTML."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NewType

import strawberry
from markdown_it import MarkdownIt
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit integer (GraphQL's Int holds 32 bits).",
        serialize=int,
        parse_value=int,
    )
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


# CommonMark with raw HTML turned off: any tag in a description comes out escaped, and
# markdown-it's link check keeps javascript:, vbscript: and file: URLs from becoming links.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def render_markdown(text: str | None) -> str | None:
    return None if text is None else _MARKDOWN.render(text)
