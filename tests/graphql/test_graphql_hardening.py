"""The GraphQL surface under hostile or careless input: fragment fan-out is refused in
time linear in the document, without stalling the server; global ids, `Long` and
`DateTime` inputs out of range (or a time without its UTC offset) answer validation
errors, never an internal one; an id
tells no caller whether a hidden object exists; members' administrator flags stay
private; the client's mistakes are logged as such, not as server errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse
from strawberry import relay

from app.graphql.limits import MAX_ALIASES, MAX_FIELDS, MAX_NODES, Cost, document_cost
from app.graphql.schema import schema
from app.models import Role, Visibility
from app.services import projects, users
from app.services.actor import OPERATOR
from tests.graphql_support import ADMIN_USERNAME, ERROR_FIELDS, GraphQLApi, graphql_api
from tests.live_server import LiveServer

INT64_MAX = 2**63 - 1


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def anonymous(api: GraphQLApi, document: str, **variables: Any) -> dict[str, Any]:
    """The whole JSON answer to a request sent without any credentials."""
    response = await api.client.post("/graphql", json={"query": document, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_model(api: GraphQLApi, project_path: str, name: str) -> str:
    created = await api.data(
        "mutation($p: String!, $n: String!) {"
        " modelCreate(input: {project: $p, displayName: $n}) { ... on Model { id } } }",
        {"p": project_path, "n": name},
    )
    return str(created["modelCreate"]["id"])


async def create_candidate(api: GraphQLApi, model_id: str) -> str:
    created = await api.data(
        "mutation($m: ID!) { candidateCreate(input: {modelId: $m}) { ... on Candidate { id } } }",
        {"m": model_id},
    )
    return str(created["candidateCreate"]["id"])


async def public_project(api: GraphQLApi, path: str) -> None:
    async with api.database.session() as session:
        admin = await users.get_user(session, username=ADMIN_USERNAME)
        await projects.create_project(
            session, path=path, visibility=Visibility.PUBLIC, owner=admin, actor=OPERATOR
        )


# --- Fragment fan-out -----------------------------------------------------------------


def fan_out(levels: int, leaf: str) -> str:
    """A document of fragments that each spread the next one twice: `leaf` 2^levels times
    once expanded, in a few hundred bytes."""
    fragments = [
        f"fragment F{level} on Query {{ ...F{level + 1} ...F{level + 1} }}"
        for level in range(levels)
    ]
    return "\n".join(["query { ...F0 }", *fragments, f"fragment F{levels} on Query {{ {leaf} }}"])


FAN_OUT_LEAVES = {
    "plain field": ("version", "fields"),
    "alias": ("renamed: version", "aliases"),
    "connection": ("projects { models(first: 1) { totalCount } }", "nodes"),
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("levels", [22, 40])
@pytest.mark.parametrize("leaf", list(FAN_OUT_LEAVES))
async def test_fragment_fan_out_is_refused_for_what_it_expands_to(
    api: GraphQLApi, levels: int, leaf: str
) -> None:
    selection, words = FAN_OUT_LEAVES[leaf]
    document = fan_out(levels, selection)
    assert len(document) < 2000
    body = await anonymous(api, document)
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert words in error["message"]


# Far more than the refusal takes, far less than the old walk over 2^22 spreads did (9 s).
FAN_OUT_ANSWER_SECONDS = 3.0
HEALTH_SECONDS = 0.5


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize("levels", [22, 40])
async def test_fragment_fan_out_does_not_stall_the_server(server: LiveServer, levels: int) -> None:
    document = fan_out(levels, "version")
    async with httpx.AsyncClient(base_url=server.url) as client:
        asked = asyncio.create_task(
            client.post("/graphql", json={"query": document}, timeout=FAN_OUT_ANSWER_SECONDS)
        )
        health: list[int] = []
        while not asked.done() or not health:
            # A timeout here fails the test: /healthz waited behind the document.
            answer = await client.get("/healthz", timeout=HEALTH_SECONDS)
            health.append(answer.status_code)
        response = await asked
    assert set(health) == {200}
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error


def cost(document: str, **variables: Any) -> Cost:
    return document_cost(schema._schema, parse(document), variables)


FRAGMENTED = """
query($n: Int) {
  a: projects { ...Project }
  b: projects { models(first: $n) { edges { node { ...Model } } } ...Project }
}
fragment Project on Project { path models(first: 3) { edges { node { ...Model ...Model } } } }
fragment Model on Model { name candidates(first: 7) { edges { node { ...Candidate } } } }
fragment Candidate on Candidate { n: name metrics { name } }
"""

INLINED_CANDIDATE = "candidates(first: 7) { edges { node { n: name metrics { name } } } }"
INLINED_MODEL = f"name {INLINED_CANDIDATE}"
INLINED_PROJECT = (
    f"path models(first: 3) {{ edges {{ node {{ {INLINED_MODEL} {INLINED_MODEL} }} }} }}"
)
INLINED = f"""
query($n: Int) {{
  a: projects {{ {INLINED_PROJECT} }}
  b: projects {{ models(first: $n) {{ edges {{ node {{ {INLINED_MODEL} }} }} }} {INLINED_PROJECT} }}
}}
"""


def test_a_fragment_costs_what_its_expansion_costs() -> None:
    assert cost(FRAGMENTED, n=5) == cost(INLINED, n=5)
    found = cost(FRAGMENTED, n=5)
    # Each project costs its 3 models and their 2 x 7 candidates; `b` adds 5 models
    # with 7 candidates each.
    assert found.nodes == 2 * (3 + 3 * 2 * 7) + 5 * (1 + 7)
    # `a` and `b`, and `n` in each of the five expansions of the Candidate fragment.
    assert found.aliases == 2 + 5
    # projects > models > edges > node > candidates > edges > node > metrics > name
    assert found.depth == 9


def test_fan_out_counts_are_capped_past_their_limits() -> None:
    found = cost(fan_out(400, "renamed: projects { models(first: 1000) { totalCount } }"))
    assert found == Cost(
        depth=3, aliases=MAX_ALIASES + 1, fields=MAX_FIELDS + 1, nodes=MAX_NODES + 1
    )


def test_a_fragment_nests_as_deep_as_where_it_is_spread() -> None:
    fragment = "fragment Deep on ModelVersion { model { latestVersion { model { name } } } }"
    nested = "latestVersion { model { " * 3 + "latestVersion { ...Deep }" + " } }" * 3
    document = f'{{ project(path: "x") {{ model(name: "m") {{ {nested} }} }} }} {fragment}'
    assert cost(document).depth == 2 + 7 + 4
    assert "nested more than 12 deep" in (cost(document).refusal() or "")


# --- Global ids -------------------------------------------------------------------------

NOT_ROW_IDS = {
    "beyond int64": str(INT64_MAX + 1),
    "huge": "9" * 30,
    "longer than int() parses": "9" * 5000,
    "non-ascii digits": "\u0661\u0662",
}


@pytest.mark.parametrize("node_id", list(NOT_ROW_IDS))
async def test_a_global_id_beyond_a_row_id_is_a_validation_error(
    api: GraphQLApi, node_id: str
) -> None:
    model_id = relay.to_base64("Model", NOT_ROW_IDS[node_id])
    for document in (
        "query($id: ID!) { model(id: $id) { name } }",
        "query($id: ID!) { node(id: $id) { id } }",
        "query($id: ID!) { nodes(ids: [$id]) { id } }",
    ):
        codes, field = await api.refusal(document, {"id": model_id})
        assert codes == ["VALIDATION_ERROR"], document
        assert field == "id"
    changed = await api.data(
        f"mutation($id: ID!) {{ modelUpdate(input: {{id: $id, displayName: 'x'}}) "
        f"{{ {ERROR_FIELDS} }} }}".replace("'", '"'),
        {"id": model_id},
    )
    assert changed["modelUpdate"]["__typename"] == "ValidationError"
    assert changed["modelUpdate"]["field"] == "id"


async def test_the_largest_row_id_is_just_missing(api: GraphQLApi) -> None:
    model_id = relay.to_base64("Model", str(INT64_MAX))
    found = await api.data("query($id: ID!) { model(id: $id) { name } }", {"id": model_id})
    assert found == {"model": None}
    changed = await api.data(
        f"mutation($id: ID!) {{ modelDelete(input: {{id: $id}}) {{ {ERROR_FIELDS} }} }}",
        {"id": model_id},
    )
    assert changed["modelDelete"]["__typename"] == "NotFoundError"


# --- Long and DateTime inputs -----------------------------------------------------------

LOG_METRICS = f"""mutation($id: ID!, $metrics: [MetricInput!]!) {{
  candidateLogMetrics(input: {{id: $id, metrics: $metrics}}) {{
    {ERROR_FIELDS}
    ... on Candidate {{ metricHistory(name: "loss") {{ edges {{ node {{ step }} }} }} }}
  }}
}}"""


@pytest.mark.parametrize("step", [2**63, -(2**63) - 1, 1e30, -1e23, 1.5, "5", True])
async def test_a_long_variable_out_of_range_is_a_validation_error(
    api: GraphQLApi, step: Any
) -> None:
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    metric = {"name": "loss", "value": 1.0, "step": step}
    [error] = await api.errors(LOG_METRICS, {"id": candidate_id, "metrics": [metric]})
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    assert "Long cannot represent" in error["message"]
    assert "'$metrics' has invalid value at [0].step" in error["message"]


@pytest.mark.parametrize("step", ["9223372036854775808", "1e30", "-1e23", "1.5"])
async def test_a_long_literal_out_of_range_is_a_validation_error(
    api: GraphQLApi, step: str
) -> None:
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    document = LOG_METRICS.replace(
        "metrics: $metrics", f'metrics: [{{name: "loss", value: 1, step: {step}}}]'
    ).replace(", $metrics: [MetricInput!]!", "")
    [error] = await api.errors(document, {"id": candidate_id})
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    assert "Long cannot represent" in error["message"]


async def test_a_long_takes_the_whole_int64_range(api: GraphQLApi) -> None:
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    metrics = [{"name": "loss", "value": 1.0, "step": step} for step in (-(2**63), 3.0, INT64_MAX)]
    logged = await api.data(LOG_METRICS, {"id": candidate_id, "metrics": metrics})
    history = logged["candidateLogMetrics"]["metricHistory"]["edges"]
    assert [edge["node"]["step"] for edge in history] == [-(2**63), 3, INT64_MAX]


# DateTime values no column holds: refused by the scalar, before the operation runs.
UNREPRESENTABLE_DATETIMES = {
    "beyond UTC": ("9999-12-31T23:00:00-14:00", "beyond the years 1 to 9999"),
    "not a date": ("yesterday", "not an ISO 8601"),
    "a number": (1714564800, "non-string"),
}
# A date and time without its UTC offset: refused by the field, naming it.
WITHOUT_OFFSET = ["2024-05-01T12:00:00", "2024-05-01"]


async def metric_count(api: GraphQLApi, candidate_id: str) -> int:
    history = await api.data(
        'query($id: ID!) { candidate(id: $id) { metricHistory(name: "loss") { totalCount } } }',
        {"id": candidate_id},
    )
    return int(history["candidate"]["metricHistory"]["totalCount"])


def logged_at(timestamp: Any) -> list[dict[str, Any]]:
    """A valid metric point, then one at `timestamp`."""
    return [
        {"name": "loss", "value": 1.0, "timestamp": "2024-05-01T12:00:00+02:00"},
        {"name": "loss", "value": 2.0, "timestamp": timestamp},
    ]


@pytest.mark.parametrize("case", list(UNREPRESENTABLE_DATETIMES))
async def test_a_metric_timestamp_no_column_holds_is_a_validation_error(
    api: GraphQLApi, case: str
) -> None:
    timestamp, words = UNREPRESENTABLE_DATETIMES[case]
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    variables = {"id": candidate_id, "metrics": logged_at(timestamp)}
    [error] = await api.errors(LOG_METRICS, variables)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    assert "'$metrics' has invalid value at [1].timestamp" in error["message"]
    assert words in error["message"]
    assert await metric_count(api, candidate_id) == 0


@pytest.mark.parametrize("timestamp", WITHOUT_OFFSET)
async def test_a_metric_timestamp_without_offset_is_refused_naming_its_field(
    api: GraphQLApi, timestamp: str
) -> None:
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    variables = {"id": candidate_id, "metrics": logged_at(timestamp)}
    refused = (await api.data(LOG_METRICS, variables))["candidateLogMetrics"]
    assert refused["__typename"] == "ValidationError", refused
    assert refused["field"] == "metrics[1].timestamp"
    assert "UTC offset" in refused["message"]
    assert await metric_count(api, candidate_id) == 0


TOKEN_CREATE = f'{{ tokenCreate(input: {{name: "t", expiresAt: %s}}) {{ {ERROR_FIELDS} }} }}'


@pytest.mark.parametrize("case", list(UNREPRESENTABLE_DATETIMES))
async def test_a_token_expiry_no_column_holds_is_a_validation_error(
    api: GraphQLApi, case: str
) -> None:
    expiry, words = UNREPRESENTABLE_DATETIMES[case]
    for document, variables in (
        ("mutation($at: DateTime!) " + TOKEN_CREATE % "$at", {"at": expiry}),
        ("mutation " + TOKEN_CREATE % json.dumps(expiry), {}),
    ):
        [error] = await api.errors(document, variables)
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert words in error["message"]


@pytest.mark.parametrize("expiry", WITHOUT_OFFSET)
async def test_a_token_expiry_without_offset_is_refused_naming_its_field(
    api: GraphQLApi, expiry: str
) -> None:
    created = await api.data("mutation($at: DateTime!) " + TOKEN_CREATE % "$at", {"at": expiry})
    assert created["tokenCreate"]["__typename"] == "ValidationError", created
    assert created["tokenCreate"]["field"] == "expiresAt"


async def test_a_timestamp_with_an_offset_is_logged_at_that_instant(api: GraphQLApi) -> None:
    candidate_id = await create_candidate(api, await create_model(api, api.project_path, "m"))
    metric = {"name": "loss", "value": 1.0, "timestamp": "2024-05-01T12:00:00.5+02:00"}
    await api.data(LOG_METRICS, {"id": candidate_id, "metrics": [metric]})
    history = await api.data(
        'query($id: ID!) { candidate(id: $id) { metricHistory(name: "loss") {'
        " edges { node { timestamp } } } } }",
        {"id": candidate_id},
    )
    [edge] = history["candidate"]["metricHistory"]["edges"]
    logged = dt.datetime.fromisoformat(edge["node"]["timestamp"])
    assert logged == dt.datetime(2024, 5, 1, 10, 0, 0, 500_000, tzinfo=dt.UTC)


# --- Missing and hidden look alike ------------------------------------------------------

CHANGES = {
    "modelUpdate": '{id: $id, displayName: "taken over"}',
    "modelDelete": "{id: $id}",
    "candidateCreate": "{modelId: $id}",
    "modelVersionCreate": "{modelId: $id}",
    "aliasDelete": '{modelId: $id, alias: "stable"}',
}


@pytest.mark.parametrize("mutation", list(CHANGES))
async def test_a_hidden_object_is_answered_as_a_missing_one(api: GraphQLApi, mutation: str) -> None:
    hidden = await create_model(api, api.project_path, "secret")
    missing = relay.to_base64("Model", "987654321")
    stranger = await api.add_user("stranger")
    document = (
        f"mutation($id: ID!) {{ {mutation}(input: {CHANGES[mutation]}) {{ {ERROR_FIELDS} }} }}"
    )
    for token in (None, stranger):
        answers = []
        for model_id in (hidden, missing):
            if token is None:
                body = await anonymous(api, document, id=model_id)
                assert "errors" not in body, body
                answer = body["data"][mutation]
            else:
                answer = (await api.data(document, {"id": model_id}, token=token))[mutation]
            answers.append({**answer, "message": answer["message"].replace(model_id, "<id>")})
        assert answers[0] == answers[1], answers
        assert answers[0]["__typename"] == "NotFoundError"
    lookup = "query($id: ID!) { model(id: $id) { name } }"
    assert (await anonymous(api, lookup, id=hidden)) == {"data": {"model": None}}


async def test_a_readable_object_the_caller_may_not_change_is_a_permission_error(
    api: GraphQLApi,
) -> None:
    await public_project(api, "open")
    model_id = await create_model(api, "open", "shown")
    document = (
        f"mutation($id: ID!) {{ modelUpdate(input: {CHANGES['modelUpdate']}) "
        f"{{ {ERROR_FIELDS} }} }}"
    )
    body = await anonymous(api, document, id=model_id)
    assert body["data"]["modelUpdate"]["__typename"] == "PermissionError"
    assert body["data"]["modelUpdate"]["code"] == "UNAUTHENTICATED"
    stranger = await api.add_user("stranger")
    answer = (await api.data(document, {"id": model_id}, token=stranger))["modelUpdate"]
    assert (answer["__typename"], answer["code"]) == ("PermissionError", "FORBIDDEN")


# --- Members ----------------------------------------------------------------------------

MEMBERS = """query($p: String!) {
  project(path: $p) { members { role user { username name isAdmin } } }
}"""


async def test_members_of_a_public_project_show_the_admin_flag_only_to_admins_and_themselves(
    api: GraphQLApi,
) -> None:
    await public_project(api, "open")
    member = await api.add_user("member")
    async with api.database.session() as session:
        project = await projects.get_project(session, path="open")
        user = await users.get_user(session, username="member")
        await projects.set_member(
            session, project=project, user=user, role=Role.DEVELOPER, actor=OPERATOR
        )

    def flags(body: dict[str, Any]) -> dict[str, Any]:
        members = body["project"]["members"]
        assert {entry["user"]["username"] for entry in members} == {ADMIN_USERNAME, "member"}
        assert {entry["role"] for entry in members} == {"OWNER", "DEVELOPER"}
        return {entry["user"]["username"]: entry["user"]["isAdmin"] for entry in members}

    seen = await anonymous(api, MEMBERS, p="open")
    assert flags(seen["data"]) == {ADMIN_USERNAME: None, "member": None}
    seen_by_member = await api.data(MEMBERS, {"p": "open"}, token=member)
    assert flags(seen_by_member) == {ADMIN_USERNAME: None, "member": False}
    seen_by_admin = await api.data(MEMBERS, {"p": "open"})
    assert flags(seen_by_admin) == {ADMIN_USERNAME: True, "member": False}


# --- Logging ----------------------------------------------------------------------------


@pytest.fixture
def graphql_log() -> Iterator[list[logging.LogRecord]]:
    """What the GraphQL layer logs while the test runs, at every level."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("strawberry.execution")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


CLIENT_MISTAKES = {
    "syntax error": ("{ version ", "GRAPHQL_VALIDATION_FAILED"),
    "unknown field": ("{ nonsense }", "GRAPHQL_VALIDATION_FAILED"),
    "too complex": (fan_out(22, "version"), "QUERY_TOO_COMPLEX"),
    "bad id": ('{ model(id: "nonsense") { name } }', "VALIDATION_ERROR"),
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mistake", list(CLIENT_MISTAKES))
async def test_a_client_mistake_is_logged_at_info(
    api: GraphQLApi, graphql_log: list[logging.LogRecord], mistake: str
) -> None:
    document, code = CLIENT_MISTAKES[mistake]
    codes, _ = await api.refusal(document)
    assert codes == [code]
    assert [record.levelno for record in graphql_log] == [logging.INFO]
    assert graphql_log[0].exc_info is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_unexpected_failure_is_logged_at_error_with_its_traceback(
    api: GraphQLApi, graphql_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*arguments: Any, **options: Any) -> Any:
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(projects, "list_projects", broken)
    codes, _ = await api.refusal("{ projects { path } }")
    assert codes == ["INTERNAL_SERVER_ERROR"]
    [record] = graphql_log
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
