"""No input gets a 5xx from the MLflow surface (the client would retry it for minutes):
every endpoint, drawn from MLflow's own REST schema, answers bad requests with MLflow's
error JSON and a 4xx, anonymous, authenticated or with garbage credentials.

Requests are drawn from the request messages MLflow's protos define for each endpoint
(`mlflow.protos`, as the installed client has them): each field either valid-ish (of its
type, often a row that exists) or hostile (`tests.bad_input`), under the root and the
per-project tracking URIs. The artifact proxy gets odd paths, ranges and bodies. The
cases the hardening issue reproduced are tests of their own at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given
from hypothesis import strategies as st
from mlflow.protos import (
    databricks_pb2,
    mlflow_artifacts_pb2,
    model_registry_pb2,
    service_pb2,
    webhooks_pb2,
)

from app.mlflow.artifacts import MULTIPART_UNSUPPORTED
from app.mlflow.routes import ENDPOINTS
from tests.bad_input import (
    ADMINISTRATOR,
    JSON_CONTENT,
    RAW_LITERALS,
    Drawn,
    Seed,
    assert_mlflow_answer,
    bounded,
    callers,
    credentials,
    describe,
    encode_json,
    floats,
    hostile_values,
    integers,
    query_string,
    quote,
    seed,
    send,
    strings,
)
from tests.live_server import LiveServer

# --- MLflow's REST schema --------------------------------------------------------------------


def _schema() -> dict[tuple[str, str], Descriptor]:
    """Each (method, path under /api/2.0) of MLflow's services and its request message."""
    found: dict[tuple[str, str], Descriptor] = {}
    for module in (service_pb2, model_registry_pb2, mlflow_artifacts_pb2, webhooks_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                for rpc in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                    found[(rpc.method, _route_path(rpc.path))] = method.input_type
    return found


def _route_path(path: str) -> str:
    """One spelling for Flask's and Starlette's path parameters: ``{name}``."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


SCHEMA = _schema()


@dataclass(frozen=True)
class MlflowEndpoint:
    method: str
    path: str
    request: Descriptor

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _endpoints() -> list[MlflowEndpoint]:
    return [
        MlflowEndpoint(method, path, SCHEMA[(method, _route_path(path))])
        for method, path, _handler in ENDPOINTS
        if (method, _route_path(path)) in SCHEMA
    ]


CATALOG = _endpoints()


def test_every_endpoint_is_in_mlflows_schema() -> None:
    """The strategies cover every endpoint: one MLflow does not define would go untested."""
    missing = [f"{m} {p}" for m, p, _ in ENDPOINTS if (m, _route_path(p)) not in SCHEMA]
    assert missing == []


# --- Strategies ------------------------------------------------------------------------------

MESSAGE_DEPTH = 3
INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}


def _typed(field: FieldDescriptor, names: list[str], depth: int) -> st.SearchStrategy[Any]:
    """A value of the field's own type: in range or not, sometimes a row that exists."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(names), strings())
    if field.type in INTEGER_TYPES:
        # proto3 JSON also spells 64-bit integers as strings.
        return st.one_of(integers(), integers().map(str))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(floats(), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.one_of(st.booleans(), st.sampled_from(["true", "false", "yes"]))
    if field.type == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values
        return st.one_of(
            st.sampled_from([value.name for value in values]),
            st.sampled_from([value.number for value in values]),
        )
    if field.type == FieldDescriptor.TYPE_MESSAGE and depth < MESSAGE_DEPTH:
        return message_bodies(field.message_type, names, depth + 1)
    return hostile_values()


def _field_values(field: FieldDescriptor, names: list[str], depth: int) -> st.SearchStrategy[Any]:
    typed = _typed(field, names, depth)
    if field.is_repeated:
        typed = st.lists(typed, max_size=5)
    # Two in three of a field's values have its type: deep enough to pass the first checks.
    return st.one_of(typed, typed, hostile_values())


def message_bodies(
    message: Descriptor, names: list[str], depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of the message's fields, any of them left out, and now and then a
    field MLflow does not define."""
    fields = st.fixed_dictionaries(
        {},
        optional={field.name: _field_values(field, names, depth) for field in message.fields},
    )
    extra = st.dictionaries(
        st.sampled_from(["unknown", "", "\ud800", "run_id\x00"]), hostile_values(), max_size=1
    )
    return st.builds(lambda known, more: {**more, **known}, fields, extra)


def _prefixes() -> st.SearchStrategy[str]:
    """Where the surface is mounted: the root, a project's tracking URI, a missing one."""
    return st.sampled_from(
        [
            "",
            "",
            "/projects/default/mlflow",
            "/projects/no-such-project/mlflow",
            "/projects/%00/mlflow",
            "/projects/%FF/mlflow",
        ]
    ).flatmap(lambda mount: st.sampled_from([f"{mount}/api/2.0", f"{mount}/ajax-api/2.0"]))


def _path_value(names: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(names), strings().filter(lambda text: len(text) < 2000))


@st.composite
def mlflow_requests(
    draw: st.DrawFn, endpoint: MlflowEndpoint, server: LiveServer, seed: Seed
) -> Drawn:
    names = seed.names()
    path = endpoint.path
    for parameter in re.findall(r"\{(\w+)(?::\w+)?\}", path):
        path = re.sub(r"\{" + parameter + r"(?::\w+)?\}", quote(draw(_path_value(names))), path)
    body = draw(message_bodies(endpoint.request, names))
    headers = credentials(server, draw(callers()))
    url = f"{draw(_prefixes())}{path}"
    if endpoint.method == "GET":
        return Drawn("GET", f"{url}?{query_string(body)}", headers)
    return Drawn(endpoint.method, url, headers | JSON_CONTENT, encode_json(body))


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> Seed:
    return seed(server)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


# --- Every endpoint --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", CATALOG, ids=str)
@given(data=st.data())
@bounded(max_examples=25)
def test_no_request_drawn_from_mlflows_schema_gets_a_5xx(
    server: LiveServer,
    seeded: Seed,
    client: httpx.Client,
    endpoint: MlflowEndpoint,
    data: st.DataObject,
) -> None:
    request = data.draw(mlflow_requests(endpoint, server, seeded), label="request")
    assert_mlflow_answer(send(client, request))


# The grid this suite grew from: every field of every endpoint set to one bad value.
GRID_VALUES: list[Any] = [
    None,
    {},
    [],
    [1, {"a": []}],
    -1,
    2**70,
    1.5e308,
    "",
    "x" * 10_000,
    "\x00",
    "../../etc/passwd",
    "' or 1=1 --",
    True,
]


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
def test_every_field_of_every_endpoint_set_to_each_bad_value_gets_no_5xx(
    server: LiveServer, client: httpx.Client
) -> None:
    failures = []
    headers = credentials(server, ADMINISTRATOR)
    for endpoint in CATALOG:
        path = re.sub(r"\{(\w+)(?::\w+)?\}", "m-0", endpoint.path)
        for value in GRID_VALUES:
            body = {field.name: value for field in endpoint.request.fields}
            if endpoint.method == "GET":
                request = Drawn("GET", f"/api/2.0{path}?{query_string(body)}", headers)
            else:
                request = Drawn(
                    endpoint.method, f"/api/2.0{path}", headers | JSON_CONTENT, encode_json(body)
                )
            try:
                assert_mlflow_answer(send(client, request))
            except AssertionError as failure:
                failures.append(str(failure))
    assert failures == [], "\n\n".join(failures)


# --- The artifact proxy ----------------------------------------------------------------------

PROXY = "/api/2.0/mlflow-artifacts"
RANGES = [
    "bytes=0-0",
    "bytes=-1",
    "bytes=1-",
    "bytes=5-1",
    "bytes=0-1,3-4",
    "bytes=99999999999999999999999-",
    "bytes=-0",
    "lines=1-2",
    "bytes=\xff",
]


@st.composite
def artifact_paths(draw: st.DrawFn, seed: Seed) -> str:
    """A proxy path: an owner that exists or not, then odd segments."""
    experiment = draw(st.sampled_from([seed.experiment_id, "0", "99999999999999999999", "-1", "x"]))
    owner = draw(
        st.sampled_from(
            [seed.run_id, f"models/{seed.logged_model_id}", "0" * 32, "models/m-0", "models"]
        )
    )
    segments = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "artifacts",
                        "notes",
                        "readme.txt",
                        "..",
                        ".",
                        "",
                        "%2e%2e",
                        "a\\b",
                        "~",
                        "MLmodel",
                    ]
                ),
                strings().filter(lambda text: len(text) < 300),
            ),
            max_size=5,
        )
    )
    return "/".join([experiment, owner, *(quote(segment) for segment in segments)])


@st.composite
def proxy_requests(draw: st.DrawFn, server: LiveServer, seed: Seed) -> Drawn:
    headers = credentials(server, draw(callers()))
    path = draw(st.one_of(st.just(seed.artifact_path), artifact_paths(seed)))
    kind = draw(st.sampled_from(["list", "get", "put", "delete", "mpu"]))
    if kind == "list":
        listed = draw(st.one_of(st.just(path), strings()))
        return Drawn("GET", f"{PROXY}/artifacts?{query_string({'path': listed})}", headers)
    if kind == "get":
        if draw(st.booleans()):
            headers |= {b"Range": draw(st.sampled_from(RANGES)).encode("latin-1")}
        return Drawn("GET", f"{PROXY}/artifacts/{path}", headers)
    if kind == "put":
        content = draw(st.one_of(st.binary(max_size=2000), st.sampled_from([b"", b"\x00" * 2**20])))
        return Drawn("PUT", f"{PROXY}/artifacts/{path}", headers, content)
    if kind == "delete":
        return Drawn("DELETE", f"{PROXY}/artifacts/{path}", headers)
    action = draw(st.sampled_from(["create", "complete", "abort", "other", ""]))
    messages: dict[str, Descriptor] = {
        "create": mlflow_artifacts_pb2.CreateMultipartUpload.DESCRIPTOR,
        "complete": mlflow_artifacts_pb2.CompleteMultipartUpload.DESCRIPTOR,
    }
    message = messages.get(action, mlflow_artifacts_pb2.AbortMultipartUpload.DESCRIPTOR)
    body = draw(message_bodies(message, seed.names()))
    return Drawn("POST", f"{PROXY}/mpu/{action}/{path}", headers | JSON_CONTENT, encode_json(body))


def assert_proxy_answer(response: httpx.Response) -> None:
    """MLflow's convention; multipart uploads answer 501 NOT_IMPLEMENTED, as MLflow's own
    server does for stores without presigned URLs (the client then uploads in one PUT)."""
    if response.status_code == 501 and "/mpu/" in response.request.url.path:
        assert response.json() == {
            "error_code": "NOT_IMPLEMENTED",
            "message": MULTIPART_UNSUPPORTED,
        }, describe(response)
        return
    assert_mlflow_answer(response)


@given(data=st.data())
@bounded(max_examples=120)
def test_no_artifact_proxy_request_gets_a_5xx(
    server: LiveServer, seeded: Seed, client: httpx.Client, data: st.DataObject
) -> None:
    request = data.draw(proxy_requests(server, seeded), label="request")
    assert_proxy_answer(send(client, request))


# --- The cases the hardening issue reproduced ------------------------------------------------


def _issue_cases(seed: Seed) -> list[tuple[str, str, bytes]]:
    """(method, path, body) of each bad request the issue answered with a 500."""
    run = seed.run_id
    deep = RAW_LITERALS["\x1braw:deep-list\x1b"]
    return [
        ("POST", "runs/create", encode_json({"experiment_id": "\ud800"})),
        (
            "POST",
            "runs/log-metric",
            encode_json({"run_id": run, "key": "k", "value": 1, "timestamp": 0, "step": 2**63}),
        ),
        (
            "POST",
            "runs/log-metric",
            encode_json({"run_id": run, "key": "k", "value": 1, "timestamp": 2**64, "step": 0}),
        ),
        (
            "POST",
            "runs/log-metric",
            encode_json(
                {"run_id": run, "key": "k", "value": 1, "timestamp": -1, "step": -(2**63) - 1}
            ),
        ),
        ("POST", "runs/log-batch", f'{{"run_id": "{run}", "metrics": {deep}}}'.encode()),
        ("POST", "runs/log-batch", b"\xff\xfe not json"),
        (
            "POST",
            "runs/log-batch",
            b'{"run_id": "'
            + run.encode()
            + b'", "metrics": [{"key": "k", "value": NaN, "timestamp": 1e400, "step": 1}]}',
        ),
        ("POST", "runs/set-tag", encode_json({"run_id": run, "key": "\udfff", "value": "\ud800"})),
        ("POST", "experiments/create", encode_json({"name": "\x00"})),
    ]


@pytest.mark.parametrize("caller", ["anonymous", ADMINISTRATOR])
def test_the_requests_the_issue_answered_with_a_500_get_a_4xx(
    server: LiveServer, seeded: Seed, client: httpx.Client, caller: str
) -> None:
    failures = []
    for method, path, body in _issue_cases(seeded):
        headers = credentials(server, caller) | JSON_CONTENT
        response = client.request(method, f"/api/2.0/mlflow/{path}", headers=headers, content=body)
        try:
            assert_mlflow_answer(response)
            assert 400 <= response.status_code < 500, describe(response)
        except AssertionError as failure:
            failures.append(str(failure))
    assert failures == [], "\n\n".join(failures)


def test_get_history_bulk_interval_with_a_run_id_100_times_answers_in_the_convention(
    server: LiveServer, seeded: Seed, client: httpx.Client
) -> None:
    query = query_string({"run_ids": [seeded.run_id] * 100, "metric_key": seeded.metric_key})
    response = client.get(
        f"/api/2.0/mlflow/metrics/get-history-bulk-interval?{query}",
        headers=credentials(server, ADMINISTRATOR),
    )
    assert_mlflow_answer(response)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"text/json",
        b"\xff",
    ],
)
def test_a_json_endpoint_sent_another_content_type_answers_a_4xx(
    server: LiveServer, seeded: Seed, client: httpx.Client, content_type: bytes | None
) -> None:
    headers = credentials(server, ADMINISTRATOR)
    if content_type is not None:
        headers[b"Content-Type"] = content_type
    body = encode_json({"experiment_id": seeded.experiment_id})
    response = client.post("/api/2.0/mlflow/runs/create", headers=headers, content=body)
    assert_mlflow_answer(response)
    assert 400 <= response.status_code < 500, describe(response)


def test_json_endpoints_answer_the_content_type_mlflow_clients_send(
    server: LiveServer, seeded: Seed, client: httpx.Client
) -> None:
    """The content-type check refuses only what MLflow clients never send."""
    response = client.post(
        "/api/2.0/mlflow/runs/create",
        headers=credentials(server, ADMINISTRATOR) | JSON_CONTENT,
        content=encode_json({"experiment_id": seeded.experiment_id}),
    )
    assert response.status_code == 200, describe(response)
