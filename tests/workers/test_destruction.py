"""Destroying models, versions and candidates: the request hides the target at once and
enqueues a job; a real arq worker (Redis) then removes every row it owned and every
object of its packages from S3 (moto), in batches that a retry can resume."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiobotocore.session import get_session
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import InvalidValueError, NotFoundError
from app.models import (
    AuditEvent,
    Candidate,
    CandidateInput,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateMetric,
    CandidateParam,
    Job,
    JobStatus,
    LifecycleState,
    LoggedModel,
    Model,
    ModelAlias,
    ModelMetadata,
    ModelVersion,
    ModelVersionMetadata,
    Package,
    PackageFile,
    PackageType,
    Project,
)
from app.outbox import JobDispatcher
from app.services import candidates, jobs, logged_models, models, packages, versions
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from app.settings import Settings
from app.storage import ArtifactStore
from tests.services import RedisServer
from workers.jobs import destruction
from workers.runner import run_job
from workers.settings import create_worker

REGION = "us-east-1"
# Bounds each wait; the tests finish long before it unless something is broken.
TIMEOUT = 120.0
# Every object the registry stores lives under this prefix of the store.
OBJECTS_PREFIX = "projects/"


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials the usual AWS way (environment), with no shared config files read."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
async def bucket(aws_environment: None, s3_endpoint_url: str) -> str:
    """A new, empty bucket of the moto server."""
    name = f"destruction-{uuid.uuid4().hex[:16]}"
    async with get_session().create_client(
        "s3", endpoint_url=s3_endpoint_url, region_name=REGION
    ) as client:
        await client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings(database: Database, redis_url: str, bucket: str, s3_endpoint_url: str) -> Settings:
    """arq through the test Redis, artifacts in the test bucket, retries milliseconds apart."""
    return Settings(
        database_url=database.url,
        redis_url=redis_url,
        artifacts=f"s3://{bucket}/registry",
        s3_endpoint_url=s3_endpoint_url,
        s3_region=REGION,
        job_retry_base_seconds=0.01,
        job_retry_max_seconds=0.05,
    )


# --- helpers -------------------------------------------------------------------------


async def run_worker_until_idle(settings: Settings) -> None:
    """A real arq worker with the production settings, in this process, until its queue
    is empty. At start-up it runs the sweep, as deployed workers do."""
    worker = create_worker(settings, burst=True, poll_delay=0.01, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=TIMEOUT)
    finally:
        with warnings.catch_warnings():
            # arq 0.28 closes its Redis client with the deprecated close().
            warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
            await worker.close()


async def load_job(database: Database, job_id: int) -> Job:
    async with database.session(read_only=True) as session:
        return await jobs.get_job(session, job_id=job_id)


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def load_candidate(database: Database, candidate_id: int) -> Candidate:
    async with database.session(read_only=True) as session:
        return await session.get_one(Candidate, candidate_id)


async def stored_keys(store: ArtifactStore) -> set[str]:
    return {info.key async for info in store.list(OBJECTS_PREFIX)}


@dataclass
class Owned:
    """What a model was given, to look for after its destruction."""

    model_id: int = 0
    candidate_ids: list[int] = field(default_factory=list)
    version_ids: list[int] = field(default_factory=list)
    logged_model_ids: list[int] = field(default_factory=list)
    package_ids: set[int] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)


async def add_stored_file(
    session: AsyncSession, store: ArtifactStore, owned: Owned, package: Package, path: str
) -> None:
    """Put a small object in the store and record it as a file of the package."""
    stored = await store.put(
        packages.new_storage_key(package.project_id), body(f"{package.version}/{path}".encode())
    )
    await packages.add_file(session, package=package, path=path, stored=stored)
    owned.package_ids.add(package.id)
    owned.keys.add(stored.key)


def metric_points(count: int) -> list[MetricPoint]:
    """`count` values over ten metric names, at increasing steps."""
    timestamp = candidates.now_ms()
    return [
        MetricPoint(
            name=f"metric_{number % 10}", value=number / 7, timestamp=timestamp, step=number
        )
        for number in range(count)
    ]


async def build_model(
    database: Database,
    store: ArtifactStore,
    project: Project,
    display_name: str,
    *,
    candidate_count: int,
    metrics_per_candidate: int,
    files_every: int,
    with_version: bool = False,
) -> Owned:
    """A model with candidates that log metrics, params, metadata and an input; every
    `files_every`-th candidate stores two files. With a version (of the first candidate,
    with a package of its own, metadata and an alias) and a logged model with a file."""
    owned = Owned()
    async with database.session() as session:
        model = await models.create_model(
            session,
            project=project,
            display_name=display_name,
            metadata={"team": "risk"},
            actor=OPERATOR,
        )
        owned.model_id = model.id
        for number in range(candidate_count):
            candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
            owned.candidate_ids.append(candidate.id)
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=metric_points(metrics_per_candidate),
                params={"learning_rate": "0.01", "epochs": "3"},
                tags={"team": "risk"},
                actor=OPERATOR,
            )
            if number % files_every == 0:
                package = await packages.candidate_package(session, candidate=candidate)
                for path in ("model/weights.bin", "metrics.json"):
                    await add_stored_file(session, store, owned, package, path)
        first = await session.get_one(Candidate, owned.candidate_ids[0])
        await candidates.record_inputs(
            session,
            candidate=first,
            entries=[("dataset_input", "train", {"name": "train"})],
            actor=OPERATOR,
        )
        if with_version:
            version = await versions.create_version(
                session, model=model, candidate=first, metadata={"stage": "prod"}, actor=OPERATOR
            )
            owned.version_ids.append(version.id)
            await versions.set_alias(
                session, model=model, alias="champion", version=version, actor=OPERATOR
            )
            release = await packages.get_or_create_package(
                session,
                project_id=project.id,
                package_type=PackageType.ML_MODEL,
                name=model.name,
                version=version.version,
            )
            version.package_id = release.id
            await add_stored_file(session, store, owned, release, "model.pkl")
            logged = await logged_models.create_logged_model(
                session, model=model, source_candidate=first, actor=OPERATOR
            )
            owned.logged_model_ids.append(logged.id)
            logged_package = await packages.logged_model_package(session, logged_model=logged)
            await add_stored_file(session, store, owned, logged_package, "MLmodel")
    return owned


_CANDIDATE_TABLES: dict[str, Any] = {
    "candidates": Candidate.id,
    "candidate_metrics": CandidateMetric.candidate_id,
    "candidate_latest_metrics": CandidateLatestMetric.candidate_id,
    "candidate_params": CandidateParam.candidate_id,
    "candidate_metadata": CandidateMetadata.candidate_id,
    "candidate_inputs": CandidateInput.candidate_id,
}


async def rows_left(database: Database, owned: Owned) -> dict[str, int]:
    """Rows still holding anything of `owned`, per table (tables with none are left out)."""
    counts: dict[str, int] = {}

    async def count(table: str, column: Any, ids: Sequence[int]) -> None:
        if ids:
            found = await session.scalar(
                sa.select(sa.func.count()).select_from(column.table).where(column.in_(ids))
            )
            if found:
                counts[table] = found

    async with database.session(read_only=True) as session:
        for table, column in _CANDIDATE_TABLES.items():
            await count(table, column, owned.candidate_ids)
        await count("models", Model.id, [owned.model_id])
        await count("model_metadata", ModelMetadata.model_id, [owned.model_id])
        await count("model_aliases", ModelAlias.model_id, [owned.model_id])
        await count("model_versions", ModelVersion.model_id, [owned.model_id])
        await count("model_version_metadata", ModelVersionMetadata.version_id, owned.version_ids)
        await count("logged_models", LoggedModel.model_id, [owned.model_id])
        await count("packages", Package.id, sorted(owned.package_ids))
        await count("package_files", PackageFile.package_id, sorted(owned.package_ids))
    return counts


async def audit_events(database: Database, action: str) -> list[AuditEvent]:
    async with database.session(read_only=True) as session:
        rows = await session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows)


# --- destroying a model --------------------------------------------------------------


async def test_destroying_a_model_hides_it_at_once_and_the_worker_removes_all_it_owned(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    default_project: Project,
) -> None:
    doomed = await build_model(
        database,
        store,
        default_project,
        "Churn",
        candidate_count=1000,
        metrics_per_candidate=100,
        files_every=100,
        with_version=True,
    )
    survivor = await build_model(
        database,
        store,
        default_project,
        "Retention",
        candidate_count=2,
        metrics_per_candidate=5,
        files_every=1,
    )
    async with database.session(read_only=True) as session:
        assert (
            await session.scalar(
                sa.select(sa.func.count())
                .select_from(CandidateMetric)
                .where(CandidateMetric.candidate_id.in_(doomed.candidate_ids))
            )
            == 100_000
        )
    assert await stored_keys(store) == doomed.keys | survivor.keys
    survivor_rows = await rows_left(database, survivor)
    eid = (await load_candidate(database, doomed.candidate_ids[-1])).eid

    async with database.session() as session:
        model = await models.get_model(session, project=default_project, name="churn")
        job = await models.destroy_model(session, model=model, actor=OPERATOR)
        assert job.status is JobStatus.PENDING

    # Gone from every read at once, and its names are free for a new model.
    async with database.session() as session:
        for lookup in ({"name": "churn"}, {"display_name": "Churn"}, {"iid": model.iid}):
            with pytest.raises(NotFoundError):
                await models.get_model(
                    session, project=default_project, include_deleted=True, **lookup
                )
        listed = await models.list_models(
            session,
            project=default_project,
            states=(LifecycleState.ACTIVE, LifecycleState.DELETED),
        )
        assert doomed.model_id not in {row.id for row in listed}
        with pytest.raises(NotFoundError):
            await candidates.get_candidate(
                session, project=default_project, eid=eid, include_deleted=True
            )
        logged = await session.get_one(LoggedModel, doomed.logged_model_ids[0])
        with pytest.raises(NotFoundError):
            await logged_models.get_logged_model(
                session, project=default_project, eid=logged.eid, include_deleted=True
            )
        successor = await models.create_model(
            session, project=default_project, display_name="Churn", actor=OPERATOR
        )
        assert successor.name == "churn"
    pushed = await load_job(database, job.id)
    assert pushed.status is JobStatus.PENDING
    assert pushed.enqueued_at is not None, "pushed to Redis right after the commit"

    await run_worker_until_idle(settings)

    finished = await load_job(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    counts = {
        "candidates": 1000,
        "metrics": 100_000,
        "versions": 1,
        "logged_models": 1,
        "packages": 12,
        "files": 22,
        "objects": 22,
    }
    assert finished.progress == counts
    assert await rows_left(database, doomed) == {}
    assert await stored_keys(store) == survivor.keys
    assert await rows_left(database, survivor) == survivor_rows
    async with database.session(read_only=True) as session:
        found = await models.get_model(session, project=default_project, name="churn")
        assert found.id == successor.id
    (requested,) = await audit_events(database, "model.destroy")
    assert (requested.target_id, requested.details) == (
        doomed.model_id,
        {"name": "Churn", "job_id": job.id},
    )
    (destroyed,) = await audit_events(database, "model.destroyed")
    assert destroyed.target_id == doomed.model_id
    assert destroyed.project_id == default_project.id
    assert destroyed.details == {"name": "Churn", "job_id": job.id, **counts}


async def test_the_default_model_cannot_be_destroyed_nor_a_model_twice(
    database: Database, default_project: Project
) -> None:
    async with database.session() as session:
        default = await models.get_model(session, project=default_project, iid=0)
        with pytest.raises(InvalidValueError, match="Default model cannot be destroyed"):
            await models.destroy_model(session, model=default, actor=OPERATOR)
        model = await models.create_model(
            session, project=default_project, display_name="Ads", actor=OPERATOR
        )
        await models.destroy_model(session, model=model, actor=OPERATOR)
        with pytest.raises(InvalidValueError, match="already being destroyed"):
            await models.destroy_model(session, model=model, actor=OPERATOR)


@pytest.mark.parametrize("interruption", ["crash", "cancel"])
async def test_a_destruction_interrupted_midway_finishes_on_the_next_run(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    default_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    interruption: str,
) -> None:
    owned = await build_model(
        database,
        store,
        default_project,
        "Churn",
        candidate_count=12,
        metrics_per_candidate=5,
        files_every=1,
    )
    async with database.session() as session:
        model = await session.get_one(Model, owned.model_id)
        job = await models.destroy_model(session, model=model, actor=OPERATOR)
    monkeypatch.setattr(destruction, "BATCH_SIZE", 5)

    if interruption == "crash":
        # The worker dies right after deleting the second batch's objects, before its rows.
        delete_many = store.delete_many
        calls = 0

        async def delete_then_die(keys: Any) -> None:
            nonlocal calls
            calls += 1
            await delete_many(keys)
            if calls == 2:
                raise RuntimeError("worker killed")

        monkeypatch.setattr(store, "delete_many", delete_then_die)
        await run_job(database, settings, job.id, artifacts=store)
        monkeypatch.setattr(store, "delete_many", delete_many)

        interrupted = await load_job(database, job.id)
        assert interrupted.status is JobStatus.PENDING, "waiting for its retry"
        assert interrupted.last_error == "RuntimeError: worker killed"
        assert interrupted.progress["candidates"] == 5
        # Objects first: the second batch's rows are left, its objects are not.
        assert (await rows_left(database, owned))["candidates"] == 7
        assert len(await stored_keys(store)) == 2 * 2
        async with database.session() as session:
            await session.execute(sa.update(Job).where(Job.id == job.id).values(run_after=utcnow()))
    else:
        # The worker is stopped (its task cancelled) once the first batch is committed:
        # a batch's late objects are deleted right after its commit.
        first_batch_saved = asyncio.Event()
        delete_late_objects = packages.delete_unreferenced_objects

        async def delete_and_signal(*arguments: Any) -> None:
            await delete_late_objects(*arguments)
            if (await load_job(database, job.id)).progress.get("candidates", 0) >= 5:
                first_batch_saved.set()
                await asyncio.Event().wait()  # the cancellation lands here

        monkeypatch.setattr(packages, "delete_unreferenced_objects", delete_and_signal)
        running = asyncio.create_task(run_job(database, settings, job.id, artifacts=store))
        await asyncio.wait_for(first_batch_saved.wait(), TIMEOUT)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        monkeypatch.setattr(packages, "delete_unreferenced_objects", delete_late_objects)

        interrupted = await load_job(database, job.id)
        assert interrupted.status is JobStatus.PENDING, "handed back for an immediate rerun"
        assert 5 <= interrupted.progress["candidates"] < 12
        assert 0 < (await rows_left(database, owned))["candidates"] <= 7

    await run_job(database, settings, job.id, artifacts=store)

    finished = await load_job(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert finished.attempts == 2
    assert finished.progress["candidates"] == 12
    assert await rows_left(database, owned) == {}
    assert await stored_keys(store) == set()
    assert len(await audit_events(database, "model.destroyed")) == 1


async def test_a_destruction_requested_while_redis_is_down_runs_once_redis_is_back(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    redis: RedisServer,
    default_project: Project,
) -> None:
    owned = await build_model(
        database,
        store,
        default_project,
        "Churn",
        candidate_count=3,
        metrics_per_candidate=5,
        files_every=1,
    )
    redis.stop()
    try:
        async with database.session() as session:
            model = await session.get_one(Model, owned.model_id)
            job = await models.destroy_model(session, model=model, actor=OPERATOR)
        left_behind = await load_job(database, job.id)
        assert left_behind.status is JobStatus.PENDING
        assert left_behind.enqueued_at is None
        async with database.session(read_only=True) as session:
            with pytest.raises(NotFoundError):
                await models.get_model(session, project=default_project, name="churn")
    finally:
        redis.start()

    await run_worker_until_idle(settings)

    finished = await load_job(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert finished.progress["candidates"] == 3
    assert await rows_left(database, owned) == {}
    assert await stored_keys(store) == set()


# --- destroying a version or a candidate ---------------------------------------------


async def test_destroying_a_version_and_a_candidate_leaves_the_rest_of_the_model(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    default_project: Project,
) -> None:
    owned = await build_model(
        database,
        store,
        default_project,
        "Fraud",
        candidate_count=4,
        metrics_per_candidate=10,
        files_every=2,  # candidates 0 and 2 store files
        with_version=True,  # version 1 of candidate 0
    )
    first, second, third, fourth = owned.candidate_ids
    async with database.session() as session:
        model = await session.get_one(Model, owned.model_id)
        version_one = await session.get_one(ModelVersion, owned.version_ids[0])
        release_id = version_one.package_id
        version_two = await versions.create_version(
            session, model=model, candidate=await session.get_one(Candidate, second), actor=OPERATOR
        )
        third_package_id = (await session.get_one(Candidate, third)).package_id
    assert release_id is not None and third_package_id is not None
    async with database.session(read_only=True) as session:
        release_keys = set(
            await session.scalars(
                sa.select(PackageFile.storage_key).where(PackageFile.package_id == release_id)
            )
        )
        third_keys = set(
            await session.scalars(
                sa.select(PackageFile.storage_key).where(PackageFile.package_id == third_package_id)
            )
        )
    assert len(release_keys) == 1 and len(third_keys) == 2

    async with database.session() as session:
        model = await session.get_one(Model, owned.model_id)
        version_one = await session.get_one(ModelVersion, owned.version_ids[0])
        version_job = await versions.destroy_version(session, version=version_one, actor=OPERATOR)
        with pytest.raises(InvalidValueError, match="candidate of a model version"):
            await candidates.destroy_candidate(
                session, candidate=await session.get_one(Candidate, second), actor=OPERATOR
            )
        candidate_job = await candidates.destroy_candidate(
            session, candidate=await session.get_one(Candidate, third), actor=OPERATOR
        )

    # At once: version 1 and its alias are gone, its candidate is a plain candidate,
    # its semver is free; the third candidate is gone.
    async with database.session() as session:
        model = await session.get_one(Model, owned.model_id)
        with pytest.raises(NotFoundError):
            await versions.get_version(session, model=model, number=1)
        with pytest.raises(NotFoundError):
            await versions.get_version(session, model=model, alias="champion")
        assert [row.number for row in await versions.list_versions(session, model=model)] == [2]
        unlinked = await candidates.get_candidate(
            session, project=default_project, eid=(await load_candidate(database, first)).eid
        )
        assert unlinked.model_version_id is None
        with pytest.raises(NotFoundError):
            await candidates.get_candidate(
                session, project=default_project, iid=(await load_candidate(database, third)).iid
            )
        assert third not in {
            row.id for row in await candidates.list_candidates(session, model=model)
        }
        version_three = await versions.create_version(
            session,
            model=model,
            candidate=await session.get_one(Candidate, fourth),
            version="1.0.0",
            actor=OPERATOR,
        )

    await run_worker_until_idle(settings)

    for job_id in (version_job.id, candidate_job.id):
        finished = await load_job(database, job_id)
        assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert (await load_job(database, version_job.id)).progress == {
        "candidates": 0,
        "metrics": 0,
        "versions": 1,
        "logged_models": 0,
        "packages": 1,
        "files": 1,
        "objects": 1,
    }
    assert (await load_job(database, candidate_job.id)).progress == {
        "candidates": 1,
        "metrics": 10,
        "versions": 0,
        "logged_models": 0,
        "packages": 1,
        "files": 2,
        "objects": 2,
    }
    assert await stored_keys(store) == owned.keys - release_keys - third_keys
    left = await rows_left(database, owned)
    assert left == {
        "candidates": 3,
        "candidate_metrics": 30,
        "candidate_latest_metrics": 30,
        "candidate_params": 6,
        "candidate_metadata": 3,
        "candidate_inputs": 1,
        "models": 1,
        "model_metadata": 1,
        "model_versions": 2,
        "logged_models": 1,
        # The first candidate's and the logged model's.
        "packages": 2,
        "package_files": 3,
    }
    async with database.session(read_only=True) as session:
        remaining_versions = set(
            await session.scalars(
                sa.select(ModelVersion.id).where(ModelVersion.model_id == owned.model_id)
            )
        )
        assert remaining_versions == {version_two.id, version_three.id}
        assert (
            await session.scalar(
                sa.select(sa.func.count())
                .select_from(ModelVersionMetadata)
                .where(ModelVersionMetadata.version_id == version_one.id)
            )
            == 0
        )
        assert await session.get(Candidate, third) is None
        assert (await session.get_one(Candidate, first)).package_id is not None
    (version_destroyed,) = await audit_events(database, "version.destroyed")
    assert version_destroyed.target_id == version_one.id
    assert version_destroyed.details["version"] == "1.0.0"
    (candidate_destroyed,) = await audit_events(database, "candidate.destroyed")
    assert candidate_destroyed.target_id == third


# --- purging soft-deleted runs -------------------------------------------------------


async def test_purging_deleted_runs_removes_their_objects_too(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    default_project: Project,
) -> None:
    owned = await build_model(
        database,
        store,
        default_project,
        "Churn",
        candidate_count=3,
        metrics_per_candidate=5,
        files_every=1,
    )
    expired, claimed_before, active = owned.candidate_ids
    long_ago = utcnow() - dt.timedelta(days=31)
    async with database.session() as session:
        for candidate_id in (expired, claimed_before):
            candidate = await session.get_one(Candidate, candidate_id)
            await candidates.delete_candidate(session, candidate=candidate, actor=OPERATOR)
            candidate.deleted_at = long_ago
        # A purge that died after claiming this one and before removing it.
        (
            await session.get_one(Candidate, claimed_before)
        ).state = LifecycleState.PENDING_DESTRUCTION
        purge = await jobs.enqueue(session, kind=jobs.PURGE_DELETED_RUNS, payload={})
    async with database.session(read_only=True) as session:
        active_package_id = (await session.get_one(Candidate, active)).package_id
        active_keys = set(
            await session.scalars(
                sa.select(PackageFile.storage_key).where(
                    PackageFile.package_id == active_package_id
                )
            )
        )

    await run_job(database, settings, purge.id, artifacts=store)

    finished = await load_job(database, purge.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert finished.progress == {"purged": 2}
    assert await stored_keys(store) == active_keys
    left = await rows_left(database, owned)
    assert (left["candidates"], left["candidate_metrics"], left["package_files"]) == (1, 5, 2)
