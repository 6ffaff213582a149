"""One operation, one rule, whichever door it comes through: every operation that both
MLflow REST and GraphQL reach allows and denies the same callers on a private project.
And a version deleted through MLflow leaves nothing behind for a later version to
serve: its package, file rows and stored objects go with it once the job ran."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from app.db import Database
from app.models import ModelVersion, Package, PackageFile, Role
from app.storage.local import LocalArtifactStore
from tests.access.test_authorization_matrix import (
    EXP,
    MLFLOW_CASES,
    MV,
    OK,
    PATHS,
    PROJECT_FIELDS,
    RM,
    RUNS,
    Caller,
    World,
    mlflow_outcome,
)
from tests.clients import app_settings, bearer, jobs_settled, serving
from tests.live_server import LiveServer

# The least role of each operation, written out independently of the code: (GraphQL
# fields, MLflow routes) that reach it.
OPERATIONS: dict[str, tuple[Role, list[str], list[tuple[str, str]]]] = {
    "delete a version": (
        Role.DEVELOPER,
        ["Mutation.modelVersionDelete"],
        [("DELETE", f"{MV}/delete")],
    ),
    "delete a model or experiment": (
        Role.MAINTAINER,
        ["Mutation.modelDelete"],
        [("POST", f"{EXP}/delete"), ("DELETE", f"{RM}/delete")],
    ),
    "delete a run or candidate": (
        Role.DEVELOPER,
        ["Mutation.candidateDelete"],
        [("POST", f"{RUNS}/delete")],
    ),
    "set an alias": (Role.DEVELOPER, ["Mutation.aliasSet"], [("POST", f"{RM}/alias")]),
    "delete an alias": (Role.DEVELOPER, ["Mutation.aliasDelete"], [("DELETE", f"{RM}/alias")]),
    "update a model's description": (
        Role.DEVELOPER,
        ["Mutation.modelUpdate"],
        [("PATCH", f"{RM}/update")],
    ),
    "update a version's description": (
        Role.DEVELOPER,
        ["Mutation.modelVersionUpdate"],
        [("PATCH", f"{MV}/update")],
    ),
}


def allowed_by_the_rule(caller: Caller, least: Role) -> bool:
    role = caller.role_in("own")
    return caller.token is not None and (caller.is_admin or (role is not None and role >= least))


@asynccontextmanager
async def built_world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """The authorization matrix's world, served in process."""
    async with serving(app_settings(tmp_path, database_url)) as client:
        database = Database(database_url)
        try:
            built = World(client, database)
            await built.build()
            yield built
        finally:
            await database.dispose()


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with built_world(database_url, tmp_path) as built:
        yield built


# The rule is decided in Python, whatever the database (as in the authorization matrix).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_each_role_gets_the_same_answer_through_mlflow_and_graphql(world: World) -> None:
    # Each role with a full token, an administrator, a user in no project, an anonymous caller.
    callers = [c for c in world.callers if c.token_kind == "api" or c.token is None]
    assert {c.role for c in callers} == {"admin", *Role, None}
    disagreements: list[tuple[str, str, object, bool, bool]] = []
    for operation, (least, fields, routes) in OPERATIONS.items():
        for caller in callers:
            wanted = allowed_by_the_rule(caller, least)
            for field in fields:
                graphql_operation, _ = PROJECT_FIELDS[field]
                seen = await graphql_operation(world, caller, PATHS["own"]) == OK
                if seen != wanted:
                    disagreements.append((operation, field, caller.role, seen, wanted))
            for route in routes:
                seen = await mlflow_outcome(world, caller, "own", MLFLOW_CASES[route]) == OK
                if seen != wanted:
                    disagreements.append((operation, " ".join(route), caller.role, seen, wanted))
    assert disagreements == []


# --- A version deleted through MLflow ---------------------------------------------------

NAME = "orphans"
SEMVER_TAG = {"modelreg.semver": "1.0.0"}


@pytest.fixture
def client(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def files_url(server: LiveServer, version_id: int, path: str = "") -> str:
    base = f"{server.url}/api/v1/projects/default/packages/ml_models/{version_id}/files"
    return f"{base}/{path}" if path else base


async def version_id(database: Database, number: int) -> int:
    async with database.session(read_only=True) as session:
        found = await session.scalar(
            sa.select(ModelVersion.id).where(
                ModelVersion.number == number, ModelVersion.version == "1.0.0"
            )
        )
    assert found is not None
    return found


async def test_a_version_deleted_through_mlflow_leaves_no_package_behind(
    server: LiveServer, client: MlflowClient
) -> None:
    client.create_registered_model(NAME)
    client.create_model_version(NAME, "s3://bucket/model", tags=SEMVER_TAG)
    client.set_registered_model_alias(NAME, "champion", "1")
    database = Database(server.database_url)
    store = LocalArtifactStore(server.log_path.parent / "data" / "artifacts")
    http = httpx.AsyncClient(headers=bearer(server.admin_token), timeout=30)
    try:
        old_id = await version_id(database, 1)
        for path in ("OLD-WEIGHTS.bin", "config.json"):
            uploaded = await http.put(files_url(server, old_id, path), content=b"old")
            assert uploaded.status_code == 201, uploaded.text
        await jobs_settled(database)
        async with database.session(read_only=True) as session:
            version = await session.get_one(ModelVersion, old_id)
            package_id = version.package_id
            keys = set(
                await session.scalars(
                    sa.select(PackageFile.storage_key).where(PackageFile.package_id == package_id)
                )
            )
        assert package_id is not None and len(keys) == 2
        assert all([await store.exists(key) for key in keys])

        client.delete_model_version(NAME, "1")

        # At once: the version and its alias are gone, as MLflow's hard delete answers.
        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
            client.get_model_version(NAME, "1")
        assert client.get_registered_model(NAME).aliases == {}
        await jobs_settled(database)
        async with database.session(read_only=True) as session:
            left = {
                "versions": await session.scalar(
                    sa.select(sa.func.count()).where(ModelVersion.id == old_id)
                ),
                "packages": await session.scalar(
                    sa.select(sa.func.count()).where(Package.id == package_id)
                ),
                "files": await session.scalar(
                    sa.select(sa.func.count()).where(PackageFile.package_id == package_id)
                ),
            }
        assert left == {"versions": 0, "packages": 0, "files": 0}
        assert [key for key in keys if await store.exists(key)] == []

        # The semver is free again, the number is not; the new version serves its own files.
        again = client.create_model_version(NAME, "s3://bucket/model", tags=SEMVER_TAG)
        assert again.version == "2"
        new_id = await version_id(database, 2)
        uploaded = await http.put(files_url(server, new_id, "NEW.bin"), content=b"new")
        assert uploaded.status_code == 201, uploaded.text
        listed = await http.get(files_url(server, new_id))
        assert listed.status_code == 200, listed.text
        assert [item["path"] for item in listed.json()["files"]] == ["NEW.bin"]
    finally:
        await http.aclose()
        await database.dispose()
