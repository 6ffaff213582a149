"""MLflow's workspaces are modelreg's projects, through the real `mlflow` client against a
live modelreg: `mlflow.set_workspace` sends every call (artifacts too) to that project,
the same names live apart in two workspaces, `list_workspaces` lists what the caller may
read, a workspace the caller may not read is answered like a missing one, and the
workspaces API creates, reads, describes and deletes projects under the projects' roles:
a CASCADE deletion by the owner leaves no row and no stored object of the project once its
`delete_project` job is done, and frees the name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import mlflow
import numpy as np
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Base, Database
from app.models import AuditEvent, Job, Package, Role, Visibility
from app.services import auth, projects, users
from app.services.actor import OPERATOR
from app.storage import LocalArtifactStore
from tests.clients import bearer, jobs_settled
from tests.live_server import LiveServer

T = TypeVar("T")

X = np.array([[0.0, 0.2], [0.1, 0.0], [0.3, 0.1], [1.0, 0.9], [0.9, 1.2], [1.1, 1.0]])
Y = np.array([0, 0, 0, 1, 1, 1])

MODELS = """
query($path: String!) {
  project(path: $path) {
    models {
      edges { node {
        displayName registered
        candidates { edges { node { params(names: ["C"]) { value } } } }
        versions { edges { node { number aliases } } }
      } }
    }
  }
}
"""


async def _arrange(server: LiveServer, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction of the server's database."""
    database = Database(server.database_url)
    try:
        async with database.session() as session:
            return await work(session)
    finally:
        await database.dispose()


async def _user_token(server: LiveServer, username: str, roles: dict[str, Role]) -> str:
    """A token of a new user with `roles` in existing projects, by path."""

    async def work(session: AsyncSession) -> str:
        user = await users.create_user(session, username=username)
        for path, role in roles.items():
            project = await projects.get_project(session, path=path)
            await projects.set_member(
                session, project=project, user=user, role=role, actor=OPERATOR
            )
        _, secret = await auth.create_token(session, user=user, name="t", scopes=["api"])
        return secret

    return await _arrange(server, work)


async def _create_projects(server: LiveServer, *paths: str, public: bool = False) -> None:
    async def work(session: AsyncSession) -> None:
        for path in paths:
            await projects.create_project(
                session,
                path=path,
                visibility=Visibility.PUBLIC if public else Visibility.PRIVATE,
                actor=OPERATOR,
            )

    await _arrange(server, work)


def _error(call: Callable[[], object]) -> tuple[str, str]:
    """The error code and message the client raises for `call`."""
    with pytest.raises(MlflowException) as raised:
        call()
    code = raised.value.error_code
    return code, raised.value.message.removeprefix(f"{code}: ")


@pytest.fixture
def as_admin(client: MlflowClient) -> Iterator[MlflowClient]:
    """The administrator's client; the active workspace is unset after the test."""
    yield client
    mlflow.set_workspace(None)


def _models_in(server: LiveServer, path: str) -> list[tuple[str, bool, list[str], list[int]]]:
    """Each model of the project by display name: registered or not, its runs' `C` params
    and its versions' numbers."""
    data = server.ask(MODELS, path=path)
    found = []
    for edge in data["project"]["models"]["edges"]:
        node = edge["node"]
        params = [
            param["value"]
            for candidate in node["candidates"]["edges"]
            for param in candidate["node"]["params"]
        ]
        numbers = [version["node"]["number"] for version in node["versions"]["edges"]]
        found.append((node["displayName"], node["registered"], params, numbers))
    return sorted(found)


def _train_and_register(tmp_path: Path, c: float) -> tuple[str, list[int]]:
    """One training run in the active workspace: a param, a metric, an artifact file and
    a logged model registered as `churn-classifier`, aliased `champion`; returns the run
    id and the champion's predictions."""
    mlflow.set_experiment("Churn training")
    notes = tmp_path / f"notes-{c}.txt"
    notes.write_text(f"C={c}\n")
    with mlflow.start_run() as run:
        mlflow.log_param("C", str(c))
        mlflow.log_metric("accuracy", 0.9)
        mlflow.log_artifact(str(notes), artifact_path="notes")
        info = mlflow.sklearn.log_model(
            LogisticRegression(C=c).fit(X, Y),
            name="model",
            registered_model_name="churn-classifier",
        )
    client = MlflowClient()
    client.set_registered_model_alias(
        "churn-classifier", "champion", str(info.registered_model_version)
    )
    champion = mlflow.pyfunc.load_model("models:/churn-classifier@champion")
    return run.info.run_id, [int(label) for label in champion.predict(X)]


def test_a_training_flow_in_a_workspace_lands_in_its_project_apart_from_default(
    server: LiveServer, as_admin: MlflowClient, tmp_path: Path
) -> None:
    created = mlflow.create_workspace("team-a", description="Team A's models")
    assert (created.name, created.description) == ("team-a", "Team A's models")

    mlflow.set_workspace("team-a")
    team_run, team_predictions = _train_and_register(tmp_path, 1.0)
    assert team_predictions == [0, 0, 0, 1, 1, 1]
    team_client = MlflowClient()
    assert [file.path for file in team_client.list_artifacts(team_run, "notes")] == [
        "notes/notes-1.0.txt"
    ]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=team_run, artifact_path="notes/notes-1.0.txt", dst_path=str(tmp_path / "team")
    )
    assert Path(downloaded).read_text() == "C=1.0\n"

    mlflow.set_workspace("default")
    default_run, default_predictions = _train_and_register(tmp_path, 0.5)
    assert default_predictions == [0, 0, 0, 1, 1, 1]
    with pytest.raises(MlflowException) as raised:
        MlflowClient().get_run(team_run)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    # The same experiment and registered model names are other models in each project.
    for workspace, run_id, c in (("team-a", team_run, "1.0"), ("default", default_run, "0.5")):
        mlflow.set_workspace(workspace)
        runs = mlflow.search_runs(experiment_names=["Churn training"], output_format="list")
        assert [run.info.run_id for run in runs] == [run_id]
        assert _models_in(server, workspace) == [
            ("Churn training", False, [c], []),
            ("Default", False, [], []),
            ("churn-classifier", True, [], [1]),
        ]


async def test_list_workspaces_shows_the_projects_a_member_may_read(
    server: LiveServer, as_admin: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _create_projects(server, "ws-member-of", "ws-private")
    await _create_projects(server, "ws-open", public=True)
    member = await _user_token(server, "ws-lister", {"ws-member-of": Role.REPORTER})

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", member)
    assert [workspace.name for workspace in mlflow.list_workspaces()] == [
        "ws-member-of",
        "ws-open",
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    every = [workspace.name for workspace in mlflow.list_workspaces()]
    assert {"default", "ws-member-of", "ws-open", "ws-private"} <= set(every)
    assert every == sorted(every)


async def test_an_outsider_is_answered_alike_for_a_private_and_a_missing_workspace(
    server: LiveServer, as_admin: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _create_projects(server, "ws-secret")
    outsider = await _user_token(server, "ws-outsider", {})
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", outsider)

    answers = []
    for name in ("ws-secret", "ws-nowhere"):
        mlflow.set_workspace(name)
        for call in (MlflowClient().search_experiments, partial(mlflow.get_workspace, name)):
            code, message = _error(call)
            answers.append((name, code, message.replace(name, "<name>")))
    missing = ("RESOURCE_DOES_NOT_EXIST", "Project '<name>' does not exist")
    assert answers == [
        ("ws-secret", *missing),
        ("ws-secret", *missing),
        ("ws-nowhere", *missing),
        ("ws-nowhere", *missing),
    ]


def test_the_workspace_header_and_a_project_prefix_must_agree(
    server: LiveServer, as_admin: MlflowClient
) -> None:
    mlflow.create_workspace("ws-prefixed")
    path = "/api/2.0/mlflow/experiments/get?experiment_id=0"
    headers = bearer(server.admin_token)

    agreeing = httpx.get(
        f"{server.url}/projects/ws-prefixed/mlflow{path}",
        headers={**headers, "X-MLFLOW-WORKSPACE": "ws-prefixed"},
    )
    assert agreeing.status_code == 200, agreeing.text
    assert agreeing.json()["experiment"]["name"] == "Default"

    conflicting = httpx.get(
        f"{server.url}/projects/ws-prefixed/mlflow{path}",
        headers={**headers, "X-MLFLOW-WORKSPACE": "default"},
    )
    assert (conflicting.status_code, conflicting.json()) == (
        400,
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "The tracking URI names project 'ws-prefixed' but the "
            "X-MLFLOW-WORKSPACE header names workspace 'default': a workspace is a project, "
            "name it once",
        },
    )
    artifacts = httpx.get(
        f"{server.url}/projects/ws-prefixed/mlflow/api/2.0/mlflow-artifacts/artifacts",
        params={"path": "0/no-such-run/artifacts"},
        headers={**headers, "X-MLFLOW-WORKSPACE": "default"},
    )
    assert (artifacts.status_code, artifacts.json()["error_code"]) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    # At the root, the header alone names the project.
    created = httpx.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        json={"name": "Header only"},
        headers={**headers, "X-MLFLOW-WORKSPACE": "ws-prefixed"},
    )
    assert created.status_code == 200, created.text
    by_name = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Header+only"
    found = [
        httpx.get(f"{server.url}{prefix}{by_name}", headers=headers).status_code
        for prefix in ("/projects/ws-prefixed/mlflow", "")
    ]
    assert found == [200, 404]


def test_server_info_says_workspaces_are_enabled(server: LiveServer) -> None:
    answer = httpx.get(
        f"{server.url}/api/3.0/mlflow/server-info", headers={"X-MLFLOW-WORKSPACE": "nowhere"}
    )
    assert (answer.status_code, answer.json()["workspaces_enabled"]) == (200, True)


async def test_workspaces_are_created_described_and_deleted_by_the_roles_that_may(
    server: LiveServer, as_admin: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = mlflow.create_workspace("ws-lifecycle")
    assert (created.name, created.description) == ("ws-lifecycle", None)
    assert _error(lambda: mlflow.create_workspace("ws-lifecycle")) == (
        "RESOURCE_ALREADY_EXISTS",
        "Project 'ws-lifecycle' already exists",
    )
    assert _error(lambda: MlflowClient().create_workspace("default")) == (
        "INVALID_PARAMETER_VALUE",
        "The 'default' workspace is reserved and cannot be created",
    )

    async def creator_owns(session: AsyncSession) -> list[tuple[str, Role]]:
        project = await projects.get_project(session, path="ws-lifecycle")
        return [
            (user.username, role)
            for user, role in await projects.list_members(session, project=project)
        ]

    assert await _arrange(server, creator_owns) == [("admin", Role.OWNER)]

    maintainer = await _user_token(server, "ws-maintainer", {"ws-lifecycle": Role.MAINTAINER})
    developer = await _user_token(server, "ws-developer", {"ws-lifecycle": Role.DEVELOPER})
    owner = await _user_token(server, "ws-owner", {"ws-lifecycle": Role.OWNER})

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", developer)
    assert _error(lambda: mlflow.create_workspace("ws-by-developer")) == (
        "PERMISSION_DENIED",
        "only an administrator may do this",
    )
    assert _error(lambda: mlflow.update_workspace("ws-lifecycle", description="no")) == (
        "PERMISSION_DENIED",
        "this needs the maintainer role or higher in 'ws-lifecycle'",
    )

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", maintainer)
    updated = mlflow.update_workspace("ws-lifecycle", description="Lifecycle models")
    assert (updated.name, updated.description) == ("ws-lifecycle", "Lifecycle models")
    got = mlflow.get_workspace("ws-lifecycle")
    assert (got.name, got.description) == ("ws-lifecycle", "Lifecycle models")
    assert _error(lambda: mlflow.delete_workspace("ws-lifecycle")) == (
        "PERMISSION_DENIED",
        "this needs the owner role or higher in 'ws-lifecycle'",
    )

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner)
    mlflow.set_workspace("ws-lifecycle")
    MlflowClient().create_registered_model("Holds a model")
    assert _error(lambda: mlflow.delete_workspace("ws-lifecycle")) == (
        "INVALID_STATE",
        "Cannot delete project 'ws-lifecycle': it still holds 1 model(s). Delete them first.",
    )
    assert _error(lambda: mlflow.delete_workspace("ws-lifecycle", mode="SET_DEFAULT")) == (
        "NOT_IMPLEMENTED",
        "Deletion mode SET_DEFAULT is not supported: delete the workspace with mode CASCADE, "
        "or delete its models first and then the workspace with mode RESTRICT",
    )
    assert _error(lambda: mlflow.delete_workspace("default")) == (
        "INVALID_PARAMETER_VALUE",
        "The 'default' workspace is reserved and cannot be deleted",
    )

    # Emptied (the model's destruction job done), it is deleted.
    MlflowClient().delete_registered_model("Holds a model")
    database = Database(server.database_url)
    try:
        await jobs_settled(database)
    finally:
        await database.dispose()
    mlflow.delete_workspace("ws-lifecycle")
    assert _error(lambda: mlflow.get_workspace("ws-lifecycle")) == (
        "RESOURCE_DOES_NOT_EXIST",
        "Project 'ws-lifecycle' does not exist",
    )
    assert "ws-lifecycle" not in [workspace.name for workspace in mlflow.list_workspaces()]


# Tables that grow while a project is built and destroyed, and must: the users and tokens
# the test makes, the audit trail (which outlives what it tells of) and the jobs.
_KEPT_TABLES = {"users", "access_tokens", "audit_events", "jobs"}


async def _row_counts(server: LiveServer) -> dict[str, int]:
    """The number of rows of every table but `_KEPT_TABLES`."""

    async def work(session: AsyncSession) -> dict[str, int]:
        return {
            table.name: int(
                await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            )
            for table in Base.metadata.sorted_tables
            if table.name not in _KEPT_TABLES
        }

    return await _arrange(server, work)


async def _stored_objects(server: LiveServer, project_id: int) -> set[str]:
    """The keys of the project's objects in the server's artifact directory."""
    store = LocalArtifactStore(server.log_path.parent / "data" / "artifacts")
    return {info.key async for info in store.list(f"projects/{project_id}/")}


async def _settled(server: LiveServer) -> None:
    database = Database(server.database_url)
    try:
        await jobs_settled(database)
    finally:
        await database.dispose()


async def test_cascade_deletion_by_the_owner_leaves_nothing_of_the_workspace(
    server: LiveServer, as_admin: MlflowClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await _settled(server)
    before = await _row_counts(server)
    mlflow.create_workspace("ws-doomed")
    owner = await _user_token(server, "ws-doomed-owner", {"ws-doomed": Role.OWNER})
    maintainer = await _user_token(server, "ws-doomed-maintainer", {"ws-doomed": Role.MAINTAINER})

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner)
    mlflow.set_workspace("ws-doomed")
    _train_and_register(tmp_path, 1.0)
    async with httpx.AsyncClient() as http:
        generic = await http.put(
            f"{server.url}/api/v1/projects/ws-doomed/packages/generic/dataset/1.0.0/rows.csv",
            content=b"a,b\n1,2\n",
            headers=bearer(owner),
        )
    assert generic.status_code == 201, generic.text
    await _settled(server)

    async def project_and_packages(session: AsyncSession) -> tuple[int, int]:
        project = await projects.get_project(session, path="ws-doomed")
        count = await session.scalar(
            sa.select(sa.func.count()).where(Package.project_id == project.id)
        )
        return project.id, int(count or 0)

    project_id, package_count = await _arrange(server, project_and_packages)
    stored = await _stored_objects(server, project_id)
    assert len(stored) > 0

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", maintainer)
    assert _error(lambda: mlflow.delete_workspace("ws-doomed", mode="CASCADE")) == (
        "PERMISSION_DENIED",
        "this needs the owner role or higher in 'ws-doomed'",
    )
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner)
    assert _error(lambda: mlflow.delete_workspace("default", mode="CASCADE")) == (
        "INVALID_PARAMETER_VALUE",
        "The 'default' workspace is reserved and cannot be deleted",
    )

    mlflow.delete_workspace("ws-doomed", mode="CASCADE")
    # Gone from every read at once, whether or not the job has run yet.
    assert _error(lambda: mlflow.get_workspace("ws-doomed")) == (
        "RESOURCE_DOES_NOT_EXIST",
        "Project 'ws-doomed' does not exist",
    )
    assert _error(lambda: MlflowClient().search_experiments()) == (
        "RESOURCE_DOES_NOT_EXIST",
        "Project 'ws-doomed' does not exist",
    )
    await _settled(server)

    async def destruction(session: AsyncSession) -> tuple[Job, list[dict[str, object] | None]]:
        job = await session.scalar(sa.select(Job).where(Job.kind == "delete_project"))
        assert job is not None
        events = await session.scalars(
            sa.select(AuditEvent.details).where(
                AuditEvent.project_id == project_id, AuditEvent.action == "project.destroyed"
            )
        )
        return job, list(events)

    job, events = await _arrange(server, destruction)
    removed = {
        "candidates": 1,
        "metrics": 1,
        "versions": 1,
        "logged_models": 1,
        "packages": package_count,
        "objects": len(stored),
    }
    assert {name: job.progress[name] for name in removed} == removed
    assert events == [{"path": "ws-doomed", "job_id": job.id, **job.progress}]
    assert await _row_counts(server) == before
    assert await _stored_objects(server, project_id) == set()

    # The name is free: a new workspace of that name is a new, empty project.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    assert mlflow.create_workspace("ws-doomed").name == "ws-doomed"
    assert [experiment.name for experiment in MlflowClient().search_experiments()] == ["Default"]


PROJECT_DELETE = """
mutation($path: String!) {
  projectDelete(input: {path: $path}) {
    __typename
    ... on JobStarted { job { kind status } }
    ... on Error { code message }
  }
}
"""


async def test_project_delete_in_graphql_starts_the_owners_cascade_and_returns_its_job(
    server: LiveServer, as_admin: MlflowClient
) -> None:
    mlflow.create_workspace("ws-graphql-doomed")
    owner = await _user_token(server, "ws-gql-owner", {"ws-graphql-doomed": Role.OWNER})
    developer = await _user_token(server, "ws-gql-developer", {"ws-graphql-doomed": Role.DEVELOPER})
    mlflow.set_workspace("ws-graphql-doomed")
    MlflowClient().create_experiment("Doomed experiment")

    async def delete(token: str, path: str) -> dict[str, object]:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{server.url}/graphql",
                json={"query": PROJECT_DELETE, "variables": {"path": path}},
                headers=bearer(token),
            )
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()["data"]["projectDelete"]
        return result

    assert await delete(developer, "ws-graphql-doomed") == {
        "__typename": "PermissionError",
        "code": "FORBIDDEN",
        "message": "this needs the owner role or higher in 'ws-graphql-doomed'",
    }
    assert await delete(server.admin_token, "default") == {
        "__typename": "ValidationError",
        "code": "VALIDATION_ERROR",
        "message": "The 'default' project cannot be deleted",
    }
    assert await delete(owner, "ws-graphql-doomed") == {
        "__typename": "JobStarted",
        "job": {"kind": "delete_project", "status": "PENDING"},
    }
    await _settled(server)
    assert "ws-graphql-doomed" not in [workspace.name for workspace in mlflow.list_workspaces()]
    assert await delete(owner, "ws-graphql-doomed") == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "message": "Project 'ws-graphql-doomed' does not exist",
    }
