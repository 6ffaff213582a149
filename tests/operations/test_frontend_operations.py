"""The frontend against the API it is built on, and its first-load budget.

Every GraphQL operation of the frontend is a file of its own, ``frontend/src/**/*.graphql``,
imported by a source with ``?raw``. Each must parse and validate against the committed
``schema.graphql`` (so a schema change that breaks the UI fails here), hold exactly one
operation, named like its file, and be imported by some source; names are unique.

The web UI's first load is the build's ``ui`` entry: its script, the chunks that script
imports statically (the React runtime it shares with GraphiQL), and its stylesheets,
as the build's manifest names them. Compressed with gzip, they stay within FIRST_LOAD_BUDGET.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode, build_schema, parse, validate
from graphql.error import GraphQLSyntaxError

from app.frontend import STATIC_DIRECTORY, page_assets

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "frontend" / "src"
SCHEMA = ROOT / "schema.graphql"
OPERATIONS = sorted(SOURCES.rglob("*.graphql"))
FIRST_LOAD_BUDGET = 300 * 1024
# `import{…}from"./client-….js"` and `import"./x.js"`: static imports of a built chunk
# (a dynamic `import("./x.js")` loads later, on demand).
STATIC_IMPORT = re.compile(r"""\bimport\s*(?:[\w$*{}\s,]*?from\s*)?["']\./([^"']+\.js)["']""")


def operation_id(path: Path) -> str:
    return path.relative_to(SOURCES).as_posix()


def test_the_frontend_has_operations() -> None:
    assert len(OPERATIONS) >= 10


@pytest.mark.parametrize("path", OPERATIONS, ids=operation_id)
def test_each_operation_validates_against_the_schema(path: Path) -> None:
    schema = build_schema(SCHEMA.read_text())
    try:
        document = parse(path.read_text())
    except GraphQLSyntaxError as error:
        pytest.fail(f"{operation_id(path)} does not parse: {error}")
    errors = validate(schema, document)
    assert [error.message for error in errors] == []
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    assert [operation.name.value if operation.name else None for operation in operations] == [
        path.stem
    ]


def test_operation_names_are_unique() -> None:
    names = [path.stem for path in OPERATIONS]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []


def test_every_operation_is_imported_by_a_source() -> None:
    sources = "\n".join(
        path.read_text() for path in SOURCES.rglob("*") if path.suffix in (".ts", ".tsx")
    )
    unused = [operation_id(path) for path in OPERATIONS if f"/{path.name}?raw" not in sources]
    assert unused == []


def first_load_files() -> list[str]:
    """The built files the UI's page loads before it runs: the entry script, the chunks it
    imports statically (transitively), and the entry's stylesheets."""
    assets = page_assets("ui")
    scripts: list[str] = []
    pending = [assets.script]
    while pending:
        script = pending.pop()
        if script in scripts:
            continue
        scripts.append(script)
        text = (STATIC_DIRECTORY / script).read_text()
        folder = script.rsplit("/", 1)[0]
        pending.extend(f"{folder}/{name}" for name in STATIC_IMPORT.findall(text))
    return sorted(scripts) + list(assets.styles)


def test_the_first_load_is_within_its_compressed_budget() -> None:
    files = first_load_files()
    assert files[0].startswith("assets/")
    sizes = {
        name: len(gzip.compress((STATIC_DIRECTORY / name).read_bytes(), compresslevel=9))
        for name in files
    }
    total = sum(sizes.values())
    assert total <= FIRST_LOAD_BUDGET, f"{total} bytes gzipped: {sizes}"
