"""GraphQL subscriptions over graphql-transport-ws against live `modelreg serve`
processes, with a real websocket client: a candidate's metrics as the `mlflow` client
logs them, in one process (in-process events) and across two processes sharing
PostgreSQL and Redis; a job's progress as a `modelreg worker` runs it; who may
subscribe (token in connection_init, cookie from our own origin only); a subscription
ended by its caller's lost access (token revoked, member removed, signed out); and the
connection limits per caller and per process (4429)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from app import events
from app.db import Database
from app.events import EventHub, FellBehindError
from app.models import Candidate
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from app.services.candidates import CandidateChange, MetricPoint
from tests.conftest import copy_postgres_template
from tests.live_server import LiveServer, copy_sqlite, live_server
from tests.services import spawn, stop_process

PROTOCOL = Subprotocol("graphql-transport-ws")
# How long a test waits for one message before it fails.
WAIT_SECONDS = 30.0
_private_projects = itertools.count(1)

CANDIDATE_UPDATED = """
subscription($id: ID!) {
  candidateUpdated(id: $id) { candidateId status endTime metrics { name value step } }
}
"""
JOB_UPDATED = """
subscription($id: ID!) { jobUpdated(id: $id) { id kind status progress { done } } }
"""
CANDIDATES = """
query($project: String!, $name: String!) {
  project(path: $project) { model(name: $name) { id
    candidates(first: 10) { edges { node { id eid } } } } }
}
"""


# --- the client side ---------------------------------------------------------------------


def websocket_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://", 1) + "/graphql"


async def send(websocket: ClientConnection, message: dict[str, Any]) -> None:
    await websocket.send(json.dumps(message))


async def receive(websocket: ClientConnection) -> dict[str, Any]:
    """The next protocol message (pings answered on the way)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), WAIT_SECONDS))
        if message["type"] != "ping":
            return message
        await send(websocket, {"type": "pong"})


@contextlib.asynccontextmanager
async def connection(
    server: LiveServer,
    payload: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> AsyncIterator[ClientConnection]:
    """An acknowledged graphql-transport-ws connection to the server."""
    async with connect(
        websocket_url(server),
        subprotocols=[PROTOCOL],
        additional_headers=headers,
        origin=None if origin is None else Origin(origin),
        open_timeout=WAIT_SECONDS,
    ) as websocket:
        await send(websocket, {"type": "connection_init", "payload": payload or {}})
        assert await receive(websocket) == {"type": "connection_ack"}
        yield websocket


async def subscribe(
    websocket: ClientConnection, operation: str, document: str, **variables: Any
) -> None:
    payload = {"query": document, "variables": variables}
    await send(websocket, {"id": operation, "type": "subscribe", "payload": payload})


async def next_data(websocket: ClientConnection, operation: str) -> dict[str, Any]:
    """The data of the operation's next result, which must hold no error."""
    message = await receive(websocket)
    assert message["type"] == "next" and message["id"] == operation, message
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"]
    return data


def metrics_of(update: dict[str, Any]) -> list[tuple[str, float, int]]:
    return [(metric["name"], metric["value"], metric["step"]) for metric in update["metrics"]]


# --- the server side ---------------------------------------------------------------------


def candidate_id(server: LiveServer, model: str, *, project: str = "default") -> str:
    """The global id of the model's only candidate."""
    found = server.ask(CANDIDATES, project=project, name=model)["project"]["model"]
    [edge] = found["candidates"]["edges"]
    return str(edge["node"]["id"])


@contextlib.contextmanager
def tracking(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[mlflow.MlflowClient]:
    """The mlflow client, as the administrator of `server`."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield mlflow.MlflowClient(server.url)


def started_run(client: mlflow.MlflowClient, model: str) -> str:
    """A run of a new experiment `model`, with loss 1.0 at step 0; its run id."""
    experiment_id = client.create_experiment(model)
    run_id: str = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 1.0, step=0)
    return run_id


def global_id(type_name: str, row_id: int) -> str:
    return base64.b64encode(f"{type_name}:{row_id}".encode()).decode()


# --- the event hub ----------------------------------------------------------------------


async def test_a_log_is_published_once_committed_and_a_rolled_back_one_never(
    database: Database,
) -> None:
    hub = EventHub()
    await hub.start()
    database.outbox.connect_events(hub)
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="events", actor=OPERATOR
        )
        candidate_id = (await candidates.create_candidate(session, model=model, actor=OPERATOR)).id

    async def log(point: MetricPoint) -> None:
        async with database.session() as session:
            candidate = await session.get_one(Candidate, candidate_id)
            await candidates.log_batch(
                session, candidate=candidate, metrics=[point], actor=OPERATOR
            )
            if point.name == "discarded":
                raise RuntimeError("the transaction rolls back")

    try:
        async with hub.subscribe(events.candidate_channel(candidate_id)) as updates:
            with pytest.raises(RuntimeError):
                await log(MetricPoint("discarded", 9.0, timestamp=1, step=1))
            await log(MetricPoint("loss", 0.5, timestamp=2, step=2))
            # Messages keep their order: a published rollback would come first.
            first = CandidateChange.from_message(await anext(updates))
    finally:
        await hub.close()

    assert first.metrics == [MetricPoint("loss", 0.5, timestamp=2, step=2)]


async def test_a_subscriber_that_falls_behind_is_dropped_with_an_error() -> None:
    hub = EventHub()
    await hub.start()
    try:
        async with hub.subscribe("job:1") as updates:
            await hub.publish(
                [events.Event("job:1", {"n": n}) for n in range(events.QUEUE_LIMIT + 1)]
            )
            with pytest.raises(FellBehindError):
                await anext(updates)
    finally:
        await hub.close()


# --- one process: in-process events ------------------------------------------------------


async def test_a_subscriber_gets_the_state_then_each_metric_the_mlflow_client_logs(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracking(server, monkeypatch) as client:
        run_id = started_run(client, "watched_in_process")
        node_id = candidate_id(server, "watched_in_process")
        async with connection(server, {"token": server.admin_token}) as websocket:
            await subscribe(websocket, "1", CANDIDATE_UPDATED, id=node_id)
            current = (await next_data(websocket, "1"))["candidateUpdated"]

            client.log_batch(
                run_id,
                metrics=[
                    mlflow.entities.Metric("loss", 0.5, 1_700_000_000_000, 1),
                    mlflow.entities.Metric("accuracy", 0.75, 1_700_000_000_000, 1),
                ],
            )
            logged = (await next_data(websocket, "1"))["candidateUpdated"]
            client.set_terminated(run_id, "FINISHED", end_time=1_700_000_001_000)
            finished = (await next_data(websocket, "1"))["candidateUpdated"]

    assert current == {
        "candidateId": node_id,
        "status": "RUNNING",
        "endTime": None,
        "metrics": [{"name": "loss", "value": 1.0, "step": 0}],
    }
    assert logged["status"] == "RUNNING"
    assert metrics_of(logged) == [("loss", 0.5, 1), ("accuracy", 0.75, 1)]
    assert (finished["status"], finished["endTime"], finished["metrics"]) == (
        "FINISHED",
        "2023-11-14T22:13:21+00:00",
        [],
    )


# --- two processes sharing PostgreSQL and Redis -------------------------------------------


@pytest.fixture
async def two_servers(
    tmp_path: Path, postgres_url: str, postgres_template: str, redis_url: str
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two `modelreg serve` processes on one PostgreSQL database, one Redis and one
    artifact directory: what runs behind a load balancer."""
    database_url = await copy_postgres_template(postgres_url)
    shared = {"redis_url": redis_url, "data_dir": str(tmp_path / "data")}
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with (
        live_server(tmp_path / "first", database_url, **shared) as first,
        live_server(tmp_path / "second", database_url, **shared) as second,
    ):
        yield first, second


@contextlib.contextmanager
def worker(server: LiveServer, redis_url: str, workdir: Path) -> Iterator[None]:
    """A `modelreg worker` process for the server's database and Redis."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MODELREG_")
    }
    environment |= {
        "MODELREG_DATABASE_URL": server.database_url,
        "MODELREG_REDIS_URL": redis_url,
        "MODELREG_DATA_DIR": str(workdir / "data"),
    }
    command = [str(Path(sys.executable).with_name("modelreg")), "worker"]
    process = spawn(command, workdir / "worker.log", cwd=workdir, env=environment)
    try:
        yield
    finally:
        stop_process(process, group=True)


async def test_metrics_logged_through_one_process_reach_a_subscriber_of_the_other(
    two_servers: tuple[LiveServer, LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    logging_server, subscribed_server = two_servers
    with tracking(logging_server, monkeypatch) as client:
        run_id = started_run(client, "watched_across")
        node_id = candidate_id(subscribed_server, "watched_across")
        async with connection(subscribed_server, {"token": subscribed_server.admin_token}) as ws:
            await subscribe(ws, "c", CANDIDATE_UPDATED, id=node_id)
            current = (await next_data(ws, "c"))["candidateUpdated"]
            for step in (1, 2, 3):
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            updates = [(await next_data(ws, "c"))["candidateUpdated"] for _ in range(3)]

    assert metrics_of(current) == [("loss", 1.0, 0)]
    assert [metrics_of(update) for update in updates] == [
        [("loss", 0.5, 1)],
        [("loss", 1.0 / 3, 2)],
        [("loss", 0.25, 3)],
    ]


async def test_a_job_run_by_a_worker_reports_its_progress_to_a_subscriber_of_another_process(
    two_servers: tuple[LiveServer, LiveServer],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    tmp_path: Path,
) -> None:
    requesting_server, subscribed_server = two_servers
    with tracking(requesting_server, monkeypatch) as client:
        run_id = started_run(client, "doomed")
        client.log_metric(run_id, "loss", 0.5, step=1)
    model_id = requesting_server.ask(CANDIDATES, project="default", name="doomed")["project"][
        "model"
    ]["id"]
    started = requesting_server.ask(
        "mutation($id: ID!) { modelDelete(input: {id: $id}) {"
        " ... on JobStarted { job { id status } } } }",
        id=model_id,
    )["modelDelete"]["job"]
    assert started["status"] == "PENDING"

    async with connection(subscribed_server, {"token": subscribed_server.admin_token}) as ws:
        await subscribe(ws, "j", JOB_UPDATED, id=started["id"])
        states = [(await next_data(ws, "j"))["jobUpdated"]]
        # The job waits for a worker: none runs until the subscriber listens.
        with worker(requesting_server, redis_url, tmp_path):
            while (message := await receive(ws))["type"] == "next":
                states.append(message["payload"]["data"]["jobUpdated"])
        assert message == {"type": "complete", "id": "j"}

    statuses = [state["status"] for state in states]
    assert statuses[0] == "PENDING" and statuses[1] == "RUNNING", statuses
    assert statuses[-1] == "SUCCEEDED" and set(statuses[2:-1]) <= {"RUNNING"}, statuses
    assert {state["id"] for state in states} == {started["id"]}
    assert {state["kind"] for state in states} == {"delete_model"}
    # One candidate and its two metric values were removed.
    assert states[-1]["progress"]["done"] == 3


# --- who may subscribe -------------------------------------------------------------------


@pytest.fixture
def private_candidate(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The global id of a running candidate in a new private project."""
    path = f"private{next(_private_projects)}"
    server.ask("mutation($p: String!) { projectCreate(input: {path: $p}) { __typename } }", p=path)
    with tracking(server, monkeypatch):
        client = mlflow.MlflowClient(f"{server.url}/projects/{path}/mlflow")
        started_run(client, "secret")
    yield candidate_id(server, "secret", project=path)


async def test_an_anonymous_subscriber_finds_a_private_candidate_missing(
    server: LiveServer, private_candidate: str
) -> None:
    async with connection(server) as websocket:
        await subscribe(websocket, "1", CANDIDATE_UPDATED, id=private_candidate)
        answer = await receive(websocket)
        end = await receive(websocket)

    assert answer == {
        "id": "1",
        "type": "next",
        "payload": {
            "data": None,
            "errors": [
                {
                    "message": f"Candidate '{private_candidate}' does not exist",
                    "extensions": {"code": "NOT_FOUND", "field": "id"},
                }
            ],
        },
    }
    assert end == {"id": "1", "type": "complete"}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda token: {"Authorization": f"Bearer {token}"}, id="authorization"),
        pytest.param(lambda token: {"token": token}, id="token"),
    ],
)
async def test_a_token_in_connection_init_subscribes_to_a_private_candidate(
    server: LiveServer, private_candidate: str, payload: Any
) -> None:
    async with connection(server, payload(server.admin_token)) as websocket:
        await subscribe(websocket, "1", CANDIDATE_UPDATED, id=private_candidate)
        current = (await next_data(websocket, "1"))["candidateUpdated"]

    assert (current["candidateId"], metrics_of(current)) == (private_candidate, [("loss", 1.0, 0)])


async def test_a_wrong_token_in_connection_init_closes_the_connection(server: LiveServer) -> None:
    async with connect(websocket_url(server), subprotocols=[PROTOCOL]) as websocket:
        await send(websocket, {"type": "connection_init", "payload": {"token": "mrpat-wrong"}})
        with pytest.raises(ConnectionClosed) as closed:
            await receive(websocket)

    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Forbidden")


def session_cookie(server: LiveServer) -> dict[str, str]:
    """The Cookie header of a browser that signed in with the administrator's token."""
    response = httpx.post(
        f"{server.url}/sign-in",
        json={"token": server.admin_token},
        headers={"Accept": "application/json"},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code == 200, response.text
    return {"Cookie": f"modelreg_session={response.cookies['modelreg_session']}"}


async def test_the_session_cookie_subscribes_from_our_own_origin(
    server: LiveServer, private_candidate: str
) -> None:
    async with connection(server, headers=session_cookie(server), origin=server.url) as websocket:
        await subscribe(websocket, "1", CANDIDATE_UPDATED, id=private_candidate)
        current = (await next_data(websocket, "1"))["candidateUpdated"]

    assert current["candidateId"] == private_candidate


async def test_a_page_of_another_origin_cannot_subscribe_with_the_session_cookie(
    server: LiveServer,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connection(
            server, headers=session_cookie(server), origin="https://attacker.example"
        ):
            pass

    assert refused.value.response.status_code == 403


async def test_a_subscription_to_an_id_of_another_type_is_a_validation_error(
    server: LiveServer,
) -> None:
    async with connection(server, {"token": server.admin_token}) as websocket:
        await subscribe(websocket, "1", CANDIDATE_UPDATED, id=global_id("Model", 1))
        answer = await receive(websocket)

    errors = answer["payload"]["errors"]
    assert (answer["type"], [error["extensions"] for error in errors]) == (
        "next",
        [{"code": "VALIDATION_ERROR", "field": "id"}],
    )


# --- losing access ends a subscription ---------------------------------------------------

_watchers = itertools.count(1)


def _watcher(server: LiveServer, project: str) -> tuple[str, str, int]:
    """A new user with the REPORTER role in `project`: (username, token secret, token id)."""
    username = f"watcher{next(_watchers)}"
    server.ask(
        "mutation($u: String!) { userCreate(input: {username: $u}) { __typename } }", u=username
    )
    server.ask(
        """mutation($p: String!, $u: String!) {
          memberSet(input: {project: $p, username: $u, role: REPORTER}) { __typename } }""",
        p=project,
        u=username,
    )
    created = server.ask(
        """mutation($u: String!) { tokenCreate(input: {name: "watch", username: $u}) {
          ... on CreatedAccessToken { secret token { id } } } }""",
        u=username,
    )["tokenCreate"]
    return username, created["secret"], created["token"]["id"]


def _signed_in(server: LiveServer, token: str) -> dict[str, str]:
    """The session and CSRF cookies of a browser that signed in with `token`."""
    response = httpx.post(
        f"{server.url}/sign-in",
        json={"token": token},
        headers={"Accept": "application/json"},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code == 200, response.text
    return {name: response.cookies[name] for name in ("modelreg_session", "modelreg_csrf")}


def _sign_out(server: LiveServer, cookies: dict[str, str]) -> None:
    response = httpx.post(
        f"{server.url}/sign-out",
        cookies=cookies,
        headers={"X-CSRF-Token": cookies["modelreg_csrf"], "Origin": server.url},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code == 204, response.text


@pytest.mark.parametrize("loss", ["token revoked", "member removed", "signed out"])
async def test_a_subscription_ends_with_an_error_once_its_caller_lost_access(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, loss: str
) -> None:
    project = f"private{next(_private_projects)}"
    server.ask(
        "mutation($p: String!) { projectCreate(input: {path: $p}) { __typename } }", p=project
    )
    username, secret, token_id = _watcher(server, project)
    with tracking(server, monkeypatch):
        client = mlflow.MlflowClient(f"{server.url}/projects/{project}/mlflow")
        run_id = started_run(client, "watched")
    watched = candidate_id(server, "watched", project=project)
    cookies = _signed_in(server, secret)
    if loss == "signed out":
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        opened = connection(server, headers={"Cookie": cookie}, origin=server.url)
    else:
        opened = connection(server, {"token": secret})

    async with opened as websocket:
        await subscribe(websocket, "1", CANDIDATE_UPDATED, id=watched)
        assert (await next_data(websocket, "1"))["candidateUpdated"]["candidateId"] == watched
        if loss == "token revoked":
            server.ask("mutation($id: Int!) { tokenRevoke(id: $id) { __typename } }", id=token_id)
        elif loss == "member removed":
            server.ask(
                """mutation($p: String!, $u: String!) {
                  memberRemove(input: {project: $p, username: $u}) { __typename } }""",
                p=project,
                u=username,
            )
        else:
            _sign_out(server, cookies)
        with tracking(server, monkeypatch):
            client.log_metric(run_id, "loss", 0.5, step=1)
        answer = await receive(websocket)
        end = await receive(websocket)

    [error] = answer["payload"]["errors"]
    expected = {
        "token revoked": ("UNAUTHENTICATED", "the access token has been revoked"),
        "member removed": ("NOT_FOUND", f"Candidate '{watched}' does not exist"),
        "signed out": ("UNAUTHENTICATED", "the session has ended; sign in again"),
    }[loss]
    assert (answer["type"], answer["payload"]["data"]) == ("next", None)
    assert (error["extensions"]["code"], error["message"]) == expected
    assert end == {"id": "1", "type": "complete"}


# --- how many connections ----------------------------------------------------------------


@pytest.fixture
def limited_server(sqlite_template: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A server holding at most 4 subscription connections, 2 per caller."""
    with live_server(
        tmp_path,
        copy_sqlite(sqlite_template, tmp_path),
        subscription_connections="4",
        subscription_connections_per_caller="2",
    ) as running:
        yield running


async def _refusal(server: LiveServer, payload: dict[str, Any]) -> tuple[int, str]:
    """The close code and reason of a connection the server refuses at connection_init."""
    async with connect(websocket_url(server), subprotocols=[PROTOCOL]) as websocket:
        await send(websocket, {"type": "connection_init", "payload": payload})
        with pytest.raises(ConnectionClosed) as closed:
            await receive(websocket)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_connections_beyond_a_callers_or_the_process_limit_are_closed_with_4429(
    limited_server: LiveServer,
) -> None:
    server = limited_server
    admin = {"token": server.admin_token}
    _, other_token, _ = _watcher(server, "default")
    too_many = (4429, "Too many subscription connections")
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(connection(server, admin))
        # A third for the same user, with the same token or another, is one too many.
        assert await _refusal(server, admin) == too_many
        # Anonymous clients count by address: two more, and the process holds 4.
        for _ in range(2):
            await stack.enter_async_context(connection(server))
        assert await _refusal(server, {}) == too_many
        # A caller that holds none is refused too: the process is full.
        assert await _refusal(server, {"token": other_token}) == too_many
    # Closed connections stop counting (once the server saw them close).
    for _ in range(100):
        with contextlib.suppress(ConnectionClosed, AssertionError):
            async with connection(server, {"token": other_token}) as websocket:
                await subscribe(websocket, "1", JOB_UPDATED, id=global_id("Job", 1))
                assert (await receive(websocket))["type"] == "next"
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("closed connections still counted")


# --- what an upload's verification works on ---------------------------------------------

UPLOAD_JOBS = """
query { project(path: "default") { jobs(first: 10) { edges { node { id kind
  target { __typename ... on ModelVersion { id } ... on Candidate { id } } } } } } }
"""


def _verification_targets(server: LiveServer) -> list[dict[str, Any] | None]:
    """The targets of the default project's upload verifications, newest first."""
    edges = server.ask(UPLOAD_JOBS)["project"]["jobs"]["edges"]
    return [edge["node"]["target"] for edge in edges if edge["node"]["kind"] == "finalize_upload"]


def _upload(server: LiveServer, files_url: str) -> None:
    response = httpx.put(
        f"{server.url}{files_url}model.pkl",
        content=b"weights",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code in (200, 201), response.text


def test_an_uploads_verification_job_targets_the_version_or_run_it_verifies(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracking(server, monkeypatch) as client:
        started_run(client, "verified")
    run = candidate_id(server, "verified")
    iid = server.ask("query($id: ID!) { node(id: $id) { ... on Candidate { iid } } }", id=run)
    _upload(
        server, f"/api/v1/projects/default/packages/ml_models/candidate:{iid['node']['iid']}/files/"
    )
    assert _verification_targets(server)[0] == {"__typename": "Candidate", "id": run}

    model = server.ask(CANDIDATES, project="default", name="verified")["project"]["model"]["id"]
    version = server.ask(
        """mutation($model: ID!) { modelVersionCreate(input: {modelId: $model}) {
          ... on ModelVersion { id uploadUrl } } }""",
        model=model,
    )["modelVersionCreate"]
    _upload(server, version["uploadUrl"])
    assert _verification_targets(server)[0] == {"__typename": "ModelVersion", "id": version["id"]}
