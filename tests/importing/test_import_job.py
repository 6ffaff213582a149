"""`projectImportMlflow`: the MLflow import as a job, asked for by a maintainer through
GraphQL and run by the server's job runner against a real MLflow 3.17 server. The job
ends with its phases' counts as its progress, the runs read back by id through the
`mlflow` client, and the source's token is never in what the job shows."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from app.db import Database
from app.graphql.nodes import row_id
from app.models import Job
from tests.conftest import module_server
from tests.importing.conftest import MlflowSource
from tests.live_server import LiveServer
from tests.services import free_port

if TYPE_CHECKING:
    from mlflow import MlflowClient

SERVER_KEY = "a-server-key-of-the-test-0123456789"
SOURCE_TOKEN = "source-token-that-must-not-show-9876"
EXPERIMENT = "small-import"
JOB_SECONDS = 180.0
NOTES = b"# two runs, three steps each\n"

IMPORT = """
mutation($input: ProjectImportMlflowInput!) {
  projectImportMlflow(input: $input) {
    __typename
    ... on JobStarted { job { id kind status } }
    ... on Error { code message }
  }
}"""
JOB = "query($id: ID!) { job(id: $id) { status error progress { done total details } } }"

_projects = itertools.count(1)


@dataclass(frozen=True)
class SmallExperiment:
    run_ids: tuple[str, ...]
    artifact_run_id: str


# A server with a key for the sources' tokens, whose jobs retry milliseconds apart.
server = module_server(
    secret_key=SERVER_KEY,
    job_retry_base_seconds="0.01",
    job_retry_max_seconds="0.05",
    job_poll_interval_seconds="0.2",
)


@pytest.fixture(scope="module")
def small_experiment(
    mlflow_source: MlflowSource, tmp_path_factory: pytest.TempPathFactory
) -> SmallExperiment:
    """Experiment `small-import` at the source: two finished runs with a 3-step `loss`
    history and a param each, one holding `notes.md`."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(mlflow_source.url)
    experiment = client.create_experiment(EXPERIMENT)
    run_ids = []
    for number in range(2):
        run = client.create_run(experiment, run_name=f"small-{number}")
        client.log_batch(
            run.info.run_id,
            params=[Param("seed", str(number))],
            metrics=[
                Metric("loss", 1.0 / (step + 1), 1_700_000_000_000, step) for step in range(3)
            ],
        )
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    notes = tmp_path_factory.mktemp("small") / "notes.md"
    notes.write_bytes(NOTES)
    client.log_artifact(run_ids[0], str(notes))
    return SmallExperiment(run_ids=tuple(run_ids), artifact_run_id=run_ids[0])


def _member(server: LiveServer, project: str, role: str) -> str:
    """A new user with `role` in `project`; their API token's secret."""
    username = f"{role.lower()}{next(_projects)}"
    server.ask(
        "mutation($u: String!) { userCreate(input: {username: $u}) { __typename } }", u=username
    )
    server.ask(
        """mutation($p: String!, $u: String!, $r: Role!) {
          memberSet(input: {project: $p, username: $u, role: $r}) { __typename } }""",
        p=project,
        u=username,
        r=role,
    )
    created = server.ask(
        """mutation($u: String!) { tokenCreate(input: {name: "import", username: $u}) {
          ... on CreatedAccessToken { secret } } }""",
        u=username,
    )["tokenCreate"]
    secret: str = created["secret"]
    return secret


def _new_project(server: LiveServer) -> str:
    path = f"moved{next(_projects)}"
    server.ask("mutation($p: String!) { projectCreate(input: {path: $p}) { __typename } }", p=path)
    return path


def _ask_import(server: LiveServer, caller: str, **fields: Any) -> dict[str, Any]:
    """The answer to `projectImportMlflow` asked with the `caller` API token."""
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": IMPORT, "variables": {"input": fields}},
        headers={"Authorization": f"Bearer {caller}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["data"]["projectImportMlflow"]
    return answer


def _ended(server: LiveServer, job_id: str) -> dict[str, Any]:
    """The job once it succeeded or failed for good."""
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job: dict[str, Any] = server.ask(JOB, id=job_id)["job"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end:\n{server.log()[-3000:]}")


async def _job_row(server: LiveServer, job_id: str) -> Job:
    database = Database(server.database_url)
    try:
        async with database.session(read_only=True) as session:
            row = await session.scalar(sa.select(Job).where(Job.id == row_id(job_id, "Job")))
            assert row is not None
            return row
    finally:
        await database.dispose()


def _downloaded(client: MlflowClient, run_id: str, path: str, directory: Path) -> bytes:
    """The bytes of a run's artifact, downloaded by the `mlflow` client."""
    return Path(client.download_artifacts(run_id, path, str(directory))).read_bytes()


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch, server: LiveServer) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield


async def test_a_maintainers_import_job_imports_the_experiment_and_counts_it(
    server: LiveServer,
    mlflow_source: MlflowSource,
    small_experiment: SmallExperiment,
    mlflow_env: None,
    tmp_path: Path,
) -> None:
    import mlflow

    project = _new_project(server)
    maintainer = _member(server, project, "MAINTAINER")
    started = _ask_import(
        server,
        maintainer,
        project=project,
        sourceUri=mlflow_source.url,
        token=SOURCE_TOKEN,
        experiments=[EXPERIMENT],
        models=[],
    )
    assert started["__typename"] == "JobStarted", started
    assert started["job"]["kind"] == "import_mlflow"

    job = _ended(server, started["job"]["id"])
    assert job["status"] == "SUCCEEDED", job
    assert job["error"] is None
    progress = job["progress"]
    # 1 experiment + 2 runs + 0 logged models + 2 runs' artifacts + 0 registered models.
    assert (progress["done"], progress["total"]) == (5, 5)
    details = progress["details"]
    assert details["phases"] == {
        "experiments": {"done": 1, "total": 1, "bytes": 0},
        "runs": {"done": 2, "total": 2, "bytes": 0},
        "logged models": {"done": 0, "total": 0, "bytes": 0},
        "artifacts": {"done": 2, "total": 2, "bytes": len(NOTES)},
        "registry": {"done": 0, "total": 0, "bytes": 0},
        "lifecycle": {"done": 0, "total": 0, "bytes": 0},
    }
    assert details["warnings"] == []
    assert details["summary"]["written"] == {
        "artifact bytes": len(NOTES),
        "artifact files": 1,
        "experiments": 1,
        "metric points": 6,
        "params": 2,
        "runs": 2,
    }

    row = await _job_row(server, started["job"]["id"])
    assert row.payload == {
        "project_id": row.project_id,
        "project": project,
        "source_url": mlflow_source.url,
        "experiments": [EXPERIMENT],
        "models": [],
        "since_ms": None,
    }
    assert SOURCE_TOKEN not in repr(row.payload) + repr(row.progress)
    assert row.encrypted_secret is None  # deleted when the job ended

    here = mlflow.MlflowClient(f"{server.url}/projects/{project}/mlflow")
    there = mlflow.MlflowClient(mlflow_source.url)
    for run_id in small_experiment.run_ids:
        mine, theirs = here.get_run(run_id), there.get_run(run_id)
        assert mine.info.run_name == theirs.info.run_name
        assert mine.info.status == "FINISHED"
        assert mine.data.params == theirs.data.params
        assert [(p.step, p.value) for p in here.get_metric_history(run_id, "loss")] == [
            (0, 1.0),
            (1, 0.5),
            (2, 1.0 / 3),
        ]
    assert _downloaded(here, small_experiment.artifact_run_id, "notes.md", tmp_path) == NOTES

    # Asked again, the import finds everything here and writes nothing.
    again = _ask_import(
        server,
        maintainer,
        project=project,
        sourceUri=mlflow_source.url,
        experiments=[EXPERIMENT],
        models=[],
    )
    repeated = _ended(server, again["job"]["id"])
    assert repeated["status"] == "SUCCEEDED", repeated
    assert repeated["progress"]["details"]["summary"] == {
        "written": {},
        "existing": {"artifact files": 1, "experiments": 1, "runs": 2},
        "skipped": {},
    }


def test_a_developer_may_not_import(server: LiveServer, mlflow_source: MlflowSource) -> None:
    project = _new_project(server)
    developer = _member(server, project, "DEVELOPER")
    refused = _ask_import(server, developer, project=project, sourceUri=mlflow_source.url)
    assert refused == {
        "__typename": "PermissionError",
        "code": "FORBIDDEN",
        "message": f"this needs the maintainer role or higher in '{project}'",
    }
    jobs = server.ask(
        "query($p: String!) { project(path: $p) { jobs { edges { node { id } } } } }", p=project
    )
    assert jobs["project"]["jobs"]["edges"] == []


def test_a_source_url_with_credentials_is_refused(server: LiveServer) -> None:
    project = _new_project(server)
    answer = _ask_import(
        server, server.admin_token, project=project, sourceUri="http://me:pw@127.0.0.1:5000"
    )
    assert answer == {
        "__typename": "ValidationError",
        "code": "VALIDATION_ERROR",
        "message": "The source URL must not hold credentials: pass them as the token",
    }


async def test_an_unreachable_source_fails_the_job_with_the_error(server: LiveServer) -> None:
    project = _new_project(server)
    maintainer = _member(server, project, "MAINTAINER")
    source = f"http://127.0.0.1:{free_port()}"
    started = _ask_import(server, maintainer, project=project, sourceUri=source, token=SOURCE_TOKEN)
    assert started["__typename"] == "JobStarted", started

    job = _ended(server, started["job"]["id"])
    assert job["status"] == "FAILED"
    assert job["error"].startswith(
        f"SourceError: POST {source}/api/2.0/mlflow/experiments/search: ConnectError("
    ), job["error"]
    row = await _job_row(server, started["job"]["id"])
    assert row.attempts == row.max_attempts
    assert row.encrypted_secret is None
    assert SOURCE_TOKEN not in repr(row.payload) + repr(row.progress) + str(row.last_error)
