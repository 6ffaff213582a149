"""No input gets a 5xx or an "Internal server error" from GraphQL: documents drawn from
the schema itself, for every root query and mutation field, with argument values of each
type and of the wrong one (as variables and as literals), global ids of every kind,
malformed documents, odd envelopes and fragment fan-out, anonymous, authenticated or with
garbage credentials, all answer JSON with `data` or `errors`.

Documents select, under the drawn root field, a few fields of what it returns, with
their own drawn arguments, down to `MAX_DEPTH` levels; unions and interfaces are
selected through inline fragments on their members.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLUnionType,
    get_named_type,
)
from hypothesis import given
from hypothesis import strategies as st

from app.graphql.schema import schema
from tests.bad_input import (
    ADMINISTRATOR,
    EDGE_INTEGERS,
    JSON_CONTENT,
    ODD_STRINGS,
    RAW_LITERALS,
    Drawn,
    Seed,
    assert_graphql_answer,
    bounded,
    callers,
    credentials,
    describe,
    encode_json,
    floats,
    hostile_values,
    integers,
    query_string,
    seed,
    send,
    strings,
)
from tests.live_server import LiveServer

SCHEMA = schema._schema
QUERY, MUTATION = SCHEMA.query_type, SCHEMA.mutation_type
assert QUERY is not None and MUTATION is not None
ROOT_FIELDS = [("query", name) for name in QUERY.fields] + [
    ("mutation", name) for name in MUTATION.fields
]
MAX_DEPTH = 3
NODE_TYPES = sorted(
    name
    for name, named in SCHEMA.type_map.items()
    if isinstance(named, GraphQLObjectType) and "id" in named.fields and not name.startswith("__")
)


# --- Values --------------------------------------------------------------------------------


def encoded_id(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


def global_ids(known: list[str]) -> st.SearchStrategy[str]:
    """Ids of rows that exist, of rows that do not, beyond int64, of garbage and of other
    types; and text that is no global id at all."""
    type_names = st.one_of(
        st.sampled_from(NODE_TYPES), st.sampled_from(["", "Nope", "ü", "\ud800"])
    )
    row_ids = st.one_of(
        st.integers(1, 5).map(str),
        st.sampled_from(EDGE_INTEGERS).map(str),
        st.sampled_from(
            ["", "abc", "1.5", "1e3", "0x10", " 1", "\u0661", "\u00b2", "-0", "9" * 400]
        ),
    )
    made = st.builds(lambda kind, row: encoded_id(f"{kind}:{row}"), type_names, row_ids)
    return st.one_of(
        st.sampled_from(known) if known else st.nothing(),
        made,
        st.sampled_from(["", "====", "Tm9wZQ", "!!", base64.b64encode(b"\xff\xfe:1").decode()]),
        strings(),
    )


def scalar_values(
    scalar: GraphQLScalarType, known: list[str], names: list[str]
) -> st.SearchStrategy[Any]:
    """A value for a scalar: of its type, in range or not."""
    match scalar.name:
        case "ID":
            return global_ids(known)
        case "Int":
            return integers()
        case "Long":
            return st.one_of(integers(), floats(), st.sampled_from(["1", "2e63", "NaN"]))
        case "Float":
            return st.one_of(floats(), st.sampled_from(["NaN", "1e400"]))
        case "Boolean":
            return st.booleans()
        case "DateTime":
            return st.one_of(
                st.datetimes().map(lambda moment: moment.isoformat()),
                st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
                st.sampled_from(
                    [
                        "2024-01-01T00:00:00",
                        "2024-02-30T00:00:00Z",
                        "0000-00-00",
                        "9999-12-31T23:59:59+14:00",
                        "now",
                        "",
                    ]
                ),
                integers(),
            )
        case "JSON":
            return hostile_values()
    return st.one_of(st.sampled_from(names), strings())


def input_values(
    input_type: GraphQLInputType, known: list[str], names: list[str], depth: int = 0
) -> st.SearchStrategy[Any]:
    """A value of the input type, each part now and then replaced by a hostile one."""
    if isinstance(input_type, GraphQLNonNull):
        inner = input_values(input_type.of_type, known, names, depth)
        return st.one_of(inner, inner, inner, st.none())
    own: st.SearchStrategy[Any]
    if isinstance(input_type, GraphQLList):
        element = input_values(input_type.of_type, known, names, depth + 1)
        own = st.one_of(st.lists(element, max_size=4), element)
    elif isinstance(input_type, GraphQLEnumType):
        own = st.sampled_from(sorted(input_type.values))
    elif isinstance(input_type, GraphQLInputObjectType):
        if depth > 4:
            return hostile_values()
        fields = input_type.fields
        own = st.fixed_dictionaries(
            {
                name: input_values(field.type, known, names, depth + 1)
                for name, field in fields.items()
                if isinstance(field.type, GraphQLNonNull)
            },
            optional={
                name: input_values(field.type, known, names, depth + 1)
                for name, field in fields.items()
                if not isinstance(field.type, GraphQLNonNull)
            },
        )
    else:
        assert isinstance(input_type, GraphQLScalarType)
        own = scalar_values(input_type, known, names)
    return st.one_of(own, own, own, hostile_values())


def literal(value: Any, enum_names: frozenset[str] = frozenset()) -> str:
    """A value written into the document: strings quoted, enum names bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value in enum_names else json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item, enum_names) for item in value) + "]"
    return (
        "{"
        + ", ".join(
            f"{_field_name(key)}: {literal(item, enum_names)}" for key, item in value.items()
        )
        + "}"
    )


def _field_name(key: str) -> str:
    """An object literal's field: a name when it is one, else the JSON of it (a syntax
    error the server must answer as such)."""
    return key if key.isidentifier() and key.isascii() else json.dumps(key)


ENUM_NAMES = frozenset(
    name
    for named in SCHEMA.type_map.values()
    if isinstance(named, GraphQLEnumType)
    for name in named.values
)


# --- Documents -----------------------------------------------------------------------------


class DocumentDraw:
    """Builds one operation, collecting the variables it declares."""

    def __init__(self, draw: st.DrawFn, known: list[str], names: list[str]) -> None:
        self.draw = draw
        self.known = known
        self.names = names
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}

    def arguments(self, field_args: dict[str, Any]) -> str:
        written = []
        for name, argument in field_args.items():
            if not isinstance(argument.type, GraphQLNonNull) and not self.draw(st.booleans()):
                continue
            value = self.draw(input_values(argument.type, self.known, self.names))
            if self.draw(st.booleans()):
                variable = f"v{len(self.definitions)}"
                declared = self.draw(
                    st.one_of(
                        st.just(str(argument.type)),
                        st.just(str(argument.type)),
                        st.sampled_from(["String", "Int!", "[ID]", "Long", "JSON", "Nope"]),
                    )
                )
                self.definitions.append(f"${variable}: {declared}")
                self.variables[variable] = value
                written.append(f"{name}: ${variable}")
            else:
                written.append(f"{name}: {literal(value, ENUM_NAMES)}")
        return f"({', '.join(written)})" if written else ""

    def field(self, parent: GraphQLObjectType | GraphQLInterfaceType, name: str, depth: int) -> str:
        definition = parent.fields[name]
        alias = "renamed: " if self.draw(st.integers(0, 9)) == 0 else ""
        selection = self.selection(definition.type, depth + 1)
        return f"{alias}{name}{self.arguments(definition.args)}{selection}"

    def selection(self, output: GraphQLOutputType, depth: int) -> str:
        named: GraphQLNamedType = get_named_type(output)
        if isinstance(named, GraphQLScalarType | GraphQLEnumType):
            return ""
        if depth >= MAX_DEPTH:
            return " { __typename }"
        parts = ["__typename"]
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            chosen = self.draw(
                st.lists(st.sampled_from(sorted(named.fields)), max_size=4, unique=True)
            )
            parts += [self.field(named, name, depth) for name in chosen]
        members: list[GraphQLObjectType] = []
        if isinstance(named, GraphQLUnionType):
            members = list(named.types)
        elif isinstance(named, GraphQLInterfaceType):
            members = list(SCHEMA.get_possible_types(named))
        if members:
            for member in self.draw(
                st.lists(st.sampled_from(members), max_size=2, unique_by=lambda t: t.name)
            ):
                parts.append(f"... on {member.name}{self.selection(member, depth)}")
        return " { " + " ".join(parts) + " }"

    def operation(self, kind: str, root_field: str) -> str:
        root = QUERY if kind == "query" else MUTATION
        assert root is not None
        body = self.field(root, root_field, 0)
        header = f"{kind} Drawn({', '.join(self.definitions)})" if self.definitions else kind
        return f"{header} {{ {body} }}"


@st.composite
def graphql_requests(
    draw: st.DrawFn, kind: str, root_field: str, server: LiveServer, seed: GraphQLSeed
) -> Drawn:
    document = DocumentDraw(draw, seed.ids, seed.names)
    text = document.operation(kind, root_field)
    headers = credentials(server, draw(callers()))
    body: dict[str, Any] = {"query": text, "variables": document.variables}
    if kind == "query" and draw(st.integers(0, 4)) == 0:
        query = query_string({"query": text, "variables": encode_json(document.variables).decode()})
        # A GET without a document is a browser asking for GraphiQL: only whole ones go.
        if query.startswith("query="):
            return Drawn("GET", f"/graphql?{query}", headers)
    return Drawn("POST", "/graphql", headers | JSON_CONTENT, encode_json(body))


class GraphQLSeed:
    """The MLflow seed, and the global ids of the models, candidates and versions it made."""

    def __init__(self, seeded: Seed, ids: list[str]) -> None:
        self.seed = seeded
        self.ids = ids
        self.names = seeded.names()


IDS_QUERY = """{ project(path: "default") { models(first: 20) { edges { node { id
  candidates(first: 5) { edges { node { id } } }
  versions(first: 5) { edges { node { id } } } } } } } }"""


def _ids(answer: Any) -> Iterator[str]:
    if isinstance(answer, dict):
        for key, value in answer.items():
            if key == "id" and isinstance(value, str):
                yield value
            else:
                yield from _ids(value)
    elif isinstance(answer, list):
        for value in answer:
            yield from _ids(value)


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(server: LiveServer, client: httpx.Client) -> GraphQLSeed:
    made = seed(server)
    response = client.post(
        "/graphql", json={"query": IDS_QUERY}, headers=credentials(server, ADMINISTRATOR)
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    ids = sorted(set(_ids(response.json())))
    assert len(ids) >= 3, ids
    return GraphQLSeed(made, ids)


# --- Every root field ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "root_field"), ROOT_FIELDS, ids=[f"{k}.{f}" for k, f in ROOT_FIELDS]
)
@given(data=st.data())
@bounded(max_examples=30)
def test_no_document_drawn_from_the_schema_gets_a_5xx(
    server: LiveServer,
    seeded: GraphQLSeed,
    client: httpx.Client,
    kind: str,
    root_field: str,
    data: st.DataObject,
) -> None:
    request = data.draw(graphql_requests(kind, root_field, server, seeded), label="request")
    assert_graphql_answer(send(client, request))


# --- Malformed documents and envelopes -------------------------------------------------------

TOKENS = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "...",
    "on",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "$v",
    ":",
    "=",
    "@include(if: true)",
    "@skip",
    "!",
    "__typename",
    "__schema",
    "node",
    "project",
    "models",
    '"""',
    '"',
    "#",
    "1e999",
    "99999999999999999999",
    "\ud800",
    "\x00",
    "\ufeff",
    "\u2028",
]


@st.composite
def malformed_documents(draw: st.DrawFn) -> str:
    valid = (
        "query Q($p: String!) { project(path: $p) "
        "{ models(first: 2) { edges { node { id name } } } } }"
    )
    document: str = draw(
        st.one_of(
            st.text(max_size=200),
            st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join),
            st.integers(0, len(valid)).map(lambda cut: valid[:cut]),
            st.sampled_from(ODD_STRINGS),
            st.just("{ " + 'project(path: "default") { ' * 300 + "name" + " }" * 301),
            st.just("{ " + " ".join(f"a{n}: version" for n in range(5000)) + " }"),
            st.just(
                "query { __schema { types { fields { type { ofType { ofType { ofType "
                "{ name } } } } } } } }"
            ),
        )
    )
    return document


@st.composite
def envelopes(draw: st.DrawFn, server: LiveServer) -> Drawn:
    """A POST body in any shape: not JSON, not an object, fields of the wrong types."""
    headers = credentials(server, draw(callers())) | JSON_CONTENT
    query = draw(st.one_of(malformed_documents(), hostile_values()))
    body = draw(
        st.one_of(
            st.fixed_dictionaries(
                {"query": st.just(query)},
                optional={
                    "variables": hostile_values(),
                    "operationName": hostile_values(),
                    "extensions": hostile_values(),
                },
            ),
            st.lists(st.fixed_dictionaries({"query": st.just(query)}), max_size=3),
            hostile_values(),
        )
    )
    content = draw(
        st.one_of(
            st.just(encode_json(body)),
            st.binary(max_size=300),
            st.sampled_from(
                [b"", b"{", b"\xff\xfe{}", b'{"query": "{ version }"} trailing', b"null"]
            ),
        )
    )
    return Drawn("POST", "/graphql", headers, content)


@given(data=st.data())
@bounded(max_examples=120)
def test_no_malformed_document_or_envelope_gets_a_5xx(
    server: LiveServer, client: httpx.Client, data: st.DataObject
) -> None:
    request = data.draw(envelopes(server), label="request")
    assert_graphql_answer(send(client, request))


def fan_out(levels: int) -> str:
    """A document whose fragments each spread the next one twice: 2**levels spreads."""
    fragments = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    fragments.append(f"fragment F{levels} on Query {{ version }}")
    return "query { ...F0 } " + " ".join(fragments)


@given(levels=st.integers(1, 16), caller=callers())
@bounded(max_examples=10)
def test_fragment_fan_out_is_answered_in_the_convention(
    server: LiveServer, client: httpx.Client, levels: int, caller: str | bytes
) -> None:
    response = client.post(
        "/graphql",
        content=encode_json({"query": fan_out(levels)}),
        headers=credentials(server, caller) | JSON_CONTENT,
    )
    assert_graphql_answer(response)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/graphql",
    ],
)
def test_a_post_of_another_content_type_is_answered_in_the_convention(
    server: LiveServer, client: httpx.Client, content_type: bytes | None
) -> None:
    headers = credentials(server, ADMINISTRATOR)
    if content_type is not None:
        headers[b"Content-Type"] = content_type
    response = client.post("/graphql", content=b'{"query": "{ version }"}', headers=headers)
    assert_graphql_answer(response)


# --- The cases the hardening issue reproduced ------------------------------------------------

BEYOND_INT64 = encoded_id("Model:9223372036854775808")
DEEP_LIST = "\x1braw:deep-list\x1b"
assert DEEP_LIST in RAW_LITERALS


def _issue_cases(seeded: GraphQLSeed) -> list[tuple[str, dict[str, Any]]]:
    candidate = next(
        (id for id in seeded.ids if base64.b64decode(id).startswith(b"Candidate:")), seeded.ids[0]
    )

    def log(step: Any, timestamp: Any = None) -> tuple[str, dict[str, Any]]:
        metric: dict[str, Any] = {"name": "m", "value": 1.0, "step": step}
        if timestamp is not None:
            metric["timestamp"] = timestamp
        return (
            "mutation L($input: CandidateLogMetricsInput!) { candidateLogMetrics(input: $input)"
            " { __typename ... on Error { message } } }",
            {"input": {"id": candidate, "metrics": [metric]}},
        )

    return [
        ("query N($id: ID!) { node(id: $id) { id } }", {"id": BEYOND_INT64}),
        ("query M($id: ID!) { model(id: $id) { id } }", {"id": BEYOND_INT64}),
        ("query M($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [BEYOND_INT64]}),
        (
            "mutation U($input: ModelUpdateInput!) { modelUpdate(input: $input)"
            " { __typename ... on Error { message } } }",
            {"input": {"id": BEYOND_INT64, "description": "x"}},
        ),
        log(2**63),
        log(1e30),
        log(-1e23),
        log(1, "2024-01-01T00:00:00"),
        ("query { version }", {"deep": DEEP_LIST}),
    ]


@pytest.mark.parametrize("caller", ["anonymous", ADMINISTRATOR])
def test_the_requests_the_issue_answered_with_internal_errors_answer_clearly(
    server: LiveServer, seeded: GraphQLSeed, client: httpx.Client, caller: str
) -> None:
    failures = []
    headers = credentials(server, caller) | JSON_CONTENT
    for document, variables in _issue_cases(seeded):
        body = encode_json({"query": document, "variables": variables})
        response = client.post("/graphql", content=body, headers=headers)
        try:
            assert_graphql_answer(response)
        except AssertionError as failure:
            failures.append(str(failure))
    assert failures == [], "\n\n".join(failures)


# Text no database stores, written into the document itself (variables are refused with
# the body's JSON): each of these reached PostgreSQL, which refused the query.
UNSTORABLE_LITERALS = [
    'mutation { memberSet(input: {project: "default", username: "a\\u0000", role: REPORTER})'
    " { __typename } }",
    'mutation { projectUpdate(input: {path: "default", name: "a\\u0000"}) { __typename } }',
    'mutation { tokenCreate(input: {name: "a\\u0000"}) { __typename } }',
    'mutation { tokenCreate(input: {name: "a\\ud800"}) { __typename } }',
    'query { project(path: "default") { model(name: "a\\u0000") { id } } }',
]


@pytest.mark.parametrize("document", UNSTORABLE_LITERALS)
def test_unstorable_text_in_a_document_is_answered_clearly(
    server: LiveServer, client: httpx.Client, document: str
) -> None:
    response = client.post(
        "/graphql",
        content=encode_json({"query": document}),
        headers=credentials(server, ADMINISTRATOR) | JSON_CONTENT,
    )
    assert_graphql_answer(response)


@pytest.mark.parametrize("body", [b"null", b"1", b'"{ version }"', b"true", b"[]", b"[1]"])
def test_a_body_that_is_no_json_object_is_refused_in_the_convention(
    server: LiveServer, client: httpx.Client, body: bytes
) -> None:
    response = client.post("/graphql", content=body, headers=dict(JSON_CONTENT))
    assert_graphql_answer(response)
    assert 400 <= response.status_code < 500, describe(response)


def test_variables_nested_deeper_than_the_limit_are_refused(
    server: LiveServer, client: httpx.Client
) -> None:
    body = encode_json({"query": "{ version }", "variables": {"v": DEEP_LIST}})
    response = client.post("/graphql", content=body, headers=dict(JSON_CONTENT))
    assert_graphql_answer(response)
    assert 400 <= response.status_code < 500, describe(response)
