"""The `migrate_package_types` job: legacy `generic` `ml_experiment_<model iid>` packages
of candidates become their `ml_model` packages in place (same rows, same storage keys),
in resumable batches, merging into an `ml_model` package the candidate already has; and
a candidate's files are served through the artifact proxy before, during and after."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database, utcnow
from app.errors import ForbiddenError
from app.mlflow.artifacts import existing_package
from app.models import (
    Candidate,
    Job,
    JobStatus,
    Model,
    Package,
    PackageFile,
    PackageType,
    Project,
)
from app.services import candidates, jobs, models, packages, users
from app.services.actor import OPERATOR, Actor
from app.settings import Settings
from app.storage import ArtifactStore
from tests.clients import bearer, serving
from workers.runner import run_job

TIMEOUT = 120.0
ADMIN_TOKEN = "migration-admin-token-0123456789"


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database.url,
        redis_url=None,
        artifacts=str(artifacts),
        bootstrap_admin_token=ADMIN_TOKEN,
        job_retry_base_seconds=0.01,
        job_retry_max_seconds=0.05,
    )


@dataclass(frozen=True)
class Legacy:
    candidate_id: int
    package_id: int
    model_name: str
    candidate_iid: int
    # path -> bytes
    files: dict[str, bytes]


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store_bytes(store: ArtifactStore, project_id: int, data: bytes) -> tuple[str, str]:
    stored = await store.put(packages.new_storage_key(project_id), _body(data))
    return stored.key, stored.sha256


async def build_legacy(
    database: Database,
    store: ArtifactStore,
    project: Project,
    *,
    model_count: int,
    candidates_per_model: int,
) -> list[Legacy]:
    """Candidates made through the services, each with a legacy generic package holding
    one or two files whose bytes are really stored."""
    built: list[Legacy] = []
    async with database.session() as session:
        project = await session.get_one(Project, project.id)
        for model_number in range(model_count):
            model = await models.create_model(
                session,
                project=project,
                display_name=f"Legacy model {model_number}",
                actor=OPERATOR,
            )
            for _ in range(candidates_per_model):
                candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
                files = {"model.pkl": f"weights of {candidate.eid}".encode()}
                if candidate.iid % 2:
                    files["metrics/summary.json"] = b'{"run": "%s"}' % candidate.eid.encode()
                package = Package(
                    project_id=project.id,
                    package_type=PackageType.GENERIC,
                    name=f"ml_experiment_{model.iid}",
                    version=str(candidate.iid),
                )
                session.add(package)
                await session.flush()
                for path, data in files.items():
                    key, sha256 = await store_bytes(store, project.id, data)
                    session.add(
                        PackageFile(
                            package_id=package.id,
                            path=path,
                            size=len(data),
                            sha256=sha256,
                            storage_key=key,
                        )
                    )
                candidate.package_id = package.id
                built.append(Legacy(candidate.id, package.id, model.name, candidate.iid, files))
        await session.flush()
    return built


Snapshot = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[int, int | None]]]


async def snapshot(database: Database) -> Snapshot:
    async with database.session(read_only=True) as session:
        package_rows = await session.execute(
            sa.select(
                Package.id,
                Package.project_id,
                Package.package_type,
                Package.name,
                Package.version,
                Package.updated_at,
            ).order_by(Package.id)
        )
        file_rows = await session.execute(
            sa.select(
                PackageFile.id,
                PackageFile.package_id,
                PackageFile.path,
                PackageFile.size,
                PackageFile.sha256,
                PackageFile.storage_key,
            ).order_by(PackageFile.id)
        )
        owners = await session.execute(
            sa.select(Candidate.id, Candidate.package_id).order_by(Candidate.id)
        )
        return (
            [tuple(row) for row in package_rows],
            [tuple(row) for row in file_rows],
            [(row[0], row[1]) for row in owners],
        )


async def storage_keys(database: Database) -> dict[tuple[int, str], str]:
    """(package id, path) -> storage key of every file."""
    async with database.session(read_only=True) as session:
        rows = await session.execute(
            sa.select(PackageFile.package_id, PackageFile.path, PackageFile.storage_key)
        )
        return {(package_id, path): key for package_id, path, key in rows}


async def read_through_proxy_resolution(
    database: Database, store: ArtifactStore, legacy: Legacy
) -> dict[str, bytes]:
    """A candidate's files the way the artifact proxy finds them: its package through
    `candidate.package_id`, then each file by path, then the object's bytes."""
    async with database.session(read_only=True) as session:
        candidate = await session.get_one(Candidate, legacy.candidate_id)
        package = await existing_package(session, candidate)
        assert package is not None
        assert package.id == (await packages.candidate_package(session, candidate=candidate)).id
        keys = {
            path: (await packages.get_file(session, package=package, path=path)).storage_key
            for path in legacy.files
        }
    found = {}
    for path, key in keys.items():
        async with await store.open(key) as stream:
            found[path] = await stream.read_all()
    return found


async def enqueue_migration(database: Database, **payload: Any) -> Job:
    async with database.session() as session:
        return await jobs.enqueue(session, kind=jobs.MIGRATE_PACKAGE_TYPES, payload=payload)


async def load_job(database: Database, job_id: int) -> Job:
    async with database.session(read_only=True) as session:
        return await jobs.get_job(session, job_id=job_id)


WORKER_SCRIPT = """
import asyncio, sys
from app.db import Database
from app.settings import Settings
from workers.runner import run_job

async def main() -> None:
    settings = Settings()
    database = Database(settings.resolved_database_url)
    try:
        await run_job(database, settings, int(sys.argv[1]))
    finally:
        await database.dispose()

asyncio.run(main())
"""


def start_worker_process(
    settings: Settings, job_id: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """A separate OS process running the job, configured the usual way (environment)."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MODELREG_")
    }
    environment |= {
        "MODELREG_DATABASE_URL": settings.resolved_database_url,
        "MODELREG_ARTIFACTS": str(settings.artifacts),
        "MODELREG_DATA_DIR": str(settings.data_dir),
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(job_id)],
            cwd=Path(__file__).resolve().parents[2],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


# --- tests ---------------------------------------------------------------------------


async def test_a_migration_killed_midway_resumes_and_keeps_every_row_key_and_byte(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    default_project: Project,
    tmp_path: Path,
) -> None:
    legacy = await build_legacy(
        database, store, default_project, model_count=5, candidates_per_model=100
    )
    assert len(legacy) == 500
    keys_before = await storage_keys(database)
    job = await enqueue_migration(database, batch_size=10, batch_pause_seconds=0.02)

    worker = start_worker_process(settings, job.id, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + TIMEOUT
        while (await load_job(database, job.id)).progress.get("migrated", 0) < 100:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker made no progress"
            await asyncio.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=TIMEOUT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    killed = await load_job(database, job.id)
    assert killed.status is JobStatus.RUNNING, "its worker died holding it"
    assert killed.attempts == 1
    done = killed.progress["migrated"]
    assert 100 <= done < 500, "killed halfway"
    async with database.session(read_only=True) as session:
        still_generic = await session.scalar(
            sa.select(sa.func.count()).where(Package.package_type == PackageType.GENERIC)
        )
        # The progress is written in the batch's transaction: it is exact.
        assert still_generic == 500 - done
        last_done = killed.progress["last_package_id"]
        assert not await session.scalar(
            sa.select(sa.func.count()).where(
                Package.package_type == PackageType.GENERIC, Package.id <= last_done
            )
        )
    # Midway, migrated and legacy candidates alike serve their files.
    for item in legacy[::50]:
        assert await read_through_proxy_resolution(database, store, item) == item.files

    # The lease of the dead worker runs out; the next runner resumes after its last batch.
    async with database.session() as session:
        await session.execute(sa.update(Job).where(Job.id == job.id).values(run_after=utcnow()))
    started = time.monotonic()
    await run_job(database, settings, job.id, artifacts=store)
    resumed_seconds = time.monotonic() - started

    finished = await load_job(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert finished.attempts == 2
    assert finished.progress["migrated"] == 500
    assert finished.progress["merged"] == 0
    assert finished.progress["skipped"] == 0
    assert finished.progress["path_conflicts"] == []

    async with database.session(read_only=True) as session:
        for item in legacy:
            candidate = await session.get_one(Candidate, item.candidate_id)
            assert candidate.package_id == item.package_id, "the same package row"
            package = await session.get_one(Package, item.package_id)
            assert package.package_type is PackageType.ML_MODEL
            assert package.name == item.model_name
            assert package.version == f"candidate_{item.candidate_iid}"
    assert await storage_keys(database) == keys_before, "same file rows, same storage keys"
    for item in legacy:
        async with database.session(read_only=True) as session:
            package = await session.get_one(Package, item.package_id)
            files = await packages.list_files(session, package=package)
        assert {file.path for file in files} == set(item.files)
        for file in files:
            async with await store.open(file.storage_key) as stream:
                assert await stream.read_all() == item.files[file.path]
    for item in legacy[::25]:
        assert await read_through_proxy_resolution(database, store, item) == item.files

    # A second run finds nothing to do and changes nothing.
    before = await snapshot(database)
    again = await enqueue_migration(database, batch_size=10)
    await run_job(database, settings, again.id, artifacts=store)
    second = await load_job(database, again.id)
    assert second.status is JobStatus.SUCCEEDED, second.last_error
    assert second.progress.get("migrated", 0) == 0
    assert await snapshot(database) == before
    print(f"\nresumed run of the remaining {500 - done} packages: {resumed_seconds:.2f}s")


async def test_a_candidate_with_an_ml_model_package_already_gets_the_legacy_files_merged_in(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    default_project: Project,
) -> None:
    [item, untouched] = await build_legacy(
        database, store, default_project, model_count=1, candidates_per_model=2
    )
    assert set(item.files) == {"model.pkl", "metrics/summary.json"}  # iid 1: two files
    # Files uploaded since into the candidate's new-style package: one at a new path,
    # one at a path the legacy package holds too (newer than the legacy file).
    async with database.session() as session:
        package = await packages.get_or_create_package(
            session,
            project_id=default_project.id,
            package_type=PackageType.ML_MODEL,
            name=item.model_name,
            version=f"candidate_{item.candidate_iid}",
        )
        target_id = package.id
        for path, data in {"new.txt": b"new", "model.pkl": b"newer weights"}.items():
            key, sha256 = await store_bytes(store, default_project.id, data)
            session.add(
                PackageFile(
                    package_id=package.id,
                    path=path,
                    size=len(data),
                    sha256=sha256,
                    storage_key=key,
                    created_at=utcnow() + dt.timedelta(seconds=1),
                )
            )
    keys_before = await storage_keys(database)

    job = await enqueue_migration(database)
    await run_job(database, settings, job.id, artifacts=store)

    finished = await load_job(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    progress = finished.progress
    assert (progress["migrated"], progress["merged"], progress["files_moved"]) == (2, 1, 1)
    assert progress["path_conflicts_count"] == 1
    [conflict] = progress["path_conflicts"]
    dropped_key = keys_before[(item.package_id, "model.pkl")]
    assert conflict == {
        "package_id": target_id,
        "legacy_package_id": item.package_id,
        "path": "model.pkl",
        "kept_storage_key": keys_before[(target_id, "model.pkl")],
        "dropped_storage_key": dropped_key,
        "dropped_size": len(item.files["model.pkl"]),
        "dropped_sha256": conflict["dropped_sha256"],
        "dropped_from": "legacy",
    }
    # The dropped file's bytes are still in the store, for an operator to restore.
    async with await store.open(dropped_key) as stream:
        assert await stream.read_all() == item.files["model.pkl"]

    async with database.session(read_only=True) as session:
        assert await session.get(Package, item.package_id) is None, "the empty legacy row"
        candidate = await session.get_one(Candidate, item.candidate_id)
        assert candidate.package_id == target_id
    assert await storage_keys(database) == {
        (target_id, "new.txt"): keys_before[(target_id, "new.txt")],
        (target_id, "model.pkl"): keys_before[(target_id, "model.pkl")],
        (target_id, "metrics/summary.json"): keys_before[(item.package_id, "metrics/summary.json")],
        **{key: value for key, value in keys_before.items() if key[0] == untouched.package_id},
    }
    expected = {"new.txt": b"new", "model.pkl": b"newer weights"} | {
        "metrics/summary.json": item.files["metrics/summary.json"]
    }
    served = await read_through_proxy_resolution(
        database, store, Legacy(item.candidate_id, target_id, "", 0, expected)
    )
    assert served == expected
    assert await read_through_proxy_resolution(database, store, untouched) == untouched.files

    before = await snapshot(database)
    again = await enqueue_migration(database)
    await run_job(database, settings, again.id, artifacts=store)
    assert (await load_job(database, again.id)).status is JobStatus.SUCCEEDED
    assert await snapshot(database) == before


async def test_legacy_files_are_served_by_the_proxy_before_and_after_the_migration(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    default_project: Project,
) -> None:
    [item] = await build_legacy(
        database, store, default_project, model_count=1, candidates_per_model=1
    )
    async with database.session(read_only=True) as session:
        candidate = await session.get_one(Candidate, item.candidate_id)
        model = await session.get_one(Model, candidate.model_id)
        base = f"/api/2.0/mlflow-artifacts/artifacts/{model.iid}/{candidate.eid}/artifacts"
        package = await session.get_one(Package, item.package_id)
        assert package.package_type is PackageType.GENERIC

    async def served(client: Any) -> dict[str, bytes]:
        found = {}
        for path in item.files:
            response = await client.get(f"{base}/{path}", headers=bearer(ADMIN_TOKEN))
            assert response.status_code == 200, response.text
            found[path] = response.content
        listing = await client.get(
            "/api/2.0/mlflow-artifacts/artifacts",
            params={"path": f"{model.iid}/{candidate.eid}/artifacts"},
            headers=bearer(ADMIN_TOKEN),
        )
        assert listing.status_code == 200, listing.text
        names = {entry["path"].rsplit("/", 1)[-1] for entry in listing.json()["files"]}
        assert names == {path.split("/")[0] for path in item.files}
        return found

    async with database.session() as session:
        await users.bootstrap_admin(session, token=ADMIN_TOKEN)
    async with serving(settings) as client:
        assert await served(client) == item.files
        job = await enqueue_migration(database)
        await run_job(database, settings, job.id, artifacts=store)
        assert (await load_job(database, job.id)).status is JobStatus.SUCCEEDED
        assert await served(client) == item.files
    async with database.session(read_only=True) as session:
        package = await session.get_one(Package, item.package_id, populate_existing=True)
        assert (package.package_type, package.version) == (
            PackageType.ML_MODEL,
            f"candidate_{item.candidate_iid}",
        )


async def test_requesting_a_migration_needs_an_admin_for_all_projects(
    database: Database, default_project: Project
) -> None:
    async with database.session() as session:
        project = await session.get_one(Project, default_project.id)
        with pytest.raises(ForbiddenError):
            await packages.request_package_type_migration(
                session,
                project=None,
                actor=Actor(user_id=None, username="someone", is_admin=False),
            )
        everywhere = await packages.request_package_type_migration(
            session, project=None, actor=OPERATOR
        )
        assert everywhere.kind == jobs.MIGRATE_PACKAGE_TYPES
        assert everywhere.payload == {}
        # Asked again while it waits: the same job.
        again = await packages.request_package_type_migration(session, project=None, actor=OPERATOR)
        assert again.id == everywhere.id
        one = await packages.request_package_type_migration(
            session, project=project, actor=OPERATOR
        )
        assert one.id != everywhere.id
        assert one.payload == {"project_id": project.id}
