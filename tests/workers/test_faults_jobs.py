"""Jobs that survive Redis and dead workers, on real PostgreSQL and Redis with real
`modelreg worker` processes: the jobs table is the truth, Redis only a transport.

Bounds, with the short settings used here (production defaults in brackets):
- a worker keeps running through a Redis outage; what was created meanwhile runs once
  Redis is back, after at most one sweep (`job_poll_interval_seconds`, 1 s [10 s]);
- a pushed job that Redis lost runs within `job_requeue_after_seconds` + one sweep
  (3 s + 1 s [30 s + 10 s]);
- the job of a SIGKILLed worker is taken over within `job_lease_seconds` + one sweep
  (3 s + 1 s [45 s + 10 s]) and finishes with nothing half-done.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from app.db import Database
from app.models import Job, JobStatus, Model, Project
from app.outbox import JobDispatcher
from app.services import models
from app.services.actor import OPERATOR
from app.settings import Settings
from app.storage import ArtifactStore
from tests.services import RedisServer
from tests.worker_process import STARTUP_SECONDS, worker_process
from tests.workers.test_destruction import Owned, audit_events, build_model, rows_left, stored_keys

LEASE_SECONDS = 3.0
SWEEP_SECONDS = 1.0
REQUEUE_AFTER_SECONDS = 3.0
# The outage of the report, under which the worker used to exit.
REDIS_OUTAGE_SECONDS = 15.0
# A worker process starts within STARTUP_SECONDS; a bound plus it is when a test gives up.


@pytest.fixture
def backend() -> str:
    """Workers and Redis go with PostgreSQL in production: these tests use only it."""
    return "postgresql"


@pytest.fixture
def settings(database: Database, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database.url,
        redis_url=redis_url,
        artifacts=str(tmp_path / "artifacts"),
        job_lease_seconds=LEASE_SECONDS,
        job_poll_interval_seconds=SWEEP_SECONDS,
        job_requeue_after_seconds=REQUEUE_AFTER_SECONDS,
        job_retry_base_seconds=0.01,
        job_retry_max_seconds=0.05,
    )


# What a worker of these tests is given.
WORKER_SETTINGS = (
    "database_url",
    "redis_url",
    "artifacts",
    "job_lease_seconds",
    "job_poll_interval_seconds",
    "job_requeue_after_seconds",
)


def started_worker(
    settings: Settings, workdir: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A `modelreg worker` process with these settings until the block ends."""
    return worker_process(settings, workdir, WORKER_SETTINGS)


async def load_job(database: Database, job_id: int) -> Job:
    async with database.session(read_only=True) as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def wait_until_succeeded(database: Database, job_id: int, within: float) -> Job:
    deadline = time.monotonic() + within
    while (job := await load_job(database, job_id)).status is not JobStatus.SUCCEEDED:
        assert job.status is not JobStatus.FAILED, job.last_error
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status.value} after {within:.0f}s")
        await asyncio.sleep(0.1)
    return job


async def model_to_destroy(
    database: Database, store: ArtifactStore, project: Project, name: str, **size: int
) -> Owned:
    return await build_model(
        database,
        store,
        project,
        name,
        candidate_count=size.get("candidates", 2),
        metrics_per_candidate=size.get("metrics", 5),
        files_every=size.get("files_every", 1),
    )


async def destroy(database: Database, owned: Owned, **payload: int) -> Job:
    """Request the model's destruction (the job is pushed when this commits); `payload`
    cuts the work into smaller steps."""
    async with database.session() as session:
        model = await session.get_one(Model, owned.model_id)
        job = await models.destroy_model(session, model=model, actor=OPERATOR)
        job.payload = {**job.payload, **payload}
    return job


async def test_worker_outlives_a_redis_outage_and_runs_what_was_requested_meanwhile(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    redis: RedisServer,
    default_project: Project,
    tmp_path: Path,
) -> None:
    owned = {
        name: await model_to_destroy(database, store, default_project, name)
        for name in ("before", "during", "after")
    }
    with started_worker(settings, tmp_path) as worker:
        before = await destroy(database, owned["before"])
        await wait_until_succeeded(database, before.id, STARTUP_SECONDS)

        redis.stop()
        try:
            during = await destroy(database, owned["during"])
            await asyncio.sleep(REDIS_OUTAGE_SECONDS)
            assert worker.poll() is None, "the worker exited during the Redis outage"
            assert (await load_job(database, during.id)).status is JobStatus.PENDING
        finally:
            redis.start()
        after = await destroy(database, owned["after"])

        bound = SWEEP_SECONDS + STARTUP_SECONDS
        for job in (during, after):
            finished = await wait_until_succeeded(database, job.id, bound)
            assert finished.attempts == 1
        assert worker.poll() is None
    for each in owned.values():
        assert await rows_left(database, each) == {}
    assert await stored_keys(store) == set()


async def test_pushed_job_that_a_redis_restart_lost_is_pushed_again_and_runs(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    redis: RedisServer,
    default_project: Project,
    tmp_path: Path,
) -> None:
    owned = await model_to_destroy(database, store, default_project, "lost")
    job = await destroy(database, owned)
    assert (await load_job(database, job.id)).enqueued_at is not None, "pushed to Redis"
    # Redis keeps nothing across a restart here: the queued job is gone.
    redis.stop()
    redis.start()

    with started_worker(settings, tmp_path):
        finished = await wait_until_succeeded(
            database, job.id, REQUEUE_AFTER_SECONDS + SWEEP_SECONDS + STARTUP_SECONDS
        )
    assert finished.attempts == 1
    assert await rows_left(database, owned) == {}
    assert await stored_keys(store) == set()


async def test_job_of_a_sigkilled_worker_is_taken_over_and_finished_by_another(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    dispatcher: JobDispatcher,
    default_project: Project,
    tmp_path: Path,
) -> None:
    owned = await model_to_destroy(
        database, store, default_project, "big", candidates=40, metrics=50, files_every=4
    )
    # One candidate and a few metric rows per step: the deletion takes a while.
    job = await destroy(database, owned, batch_size=1, metric_batch_size=10)

    with started_worker(settings, tmp_path) as first:
        deadline = time.monotonic() + STARTUP_SECONDS
        while (await load_job(database, job.id)).progress.get("candidates", 0) < 3:
            assert time.monotonic() < deadline, "the first worker never got going"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
    interrupted = await load_job(database, job.id)
    assert interrupted.status is JobStatus.RUNNING, "killed in the middle of the job"
    assert 3 <= interrupted.progress["candidates"] < 40
    assert interrupted.attempts == 1

    with started_worker(settings, tmp_path):
        finished = await wait_until_succeeded(
            database, job.id, LEASE_SECONDS + SWEEP_SECONDS + STARTUP_SECONDS
        )
    assert finished.attempts == 2
    assert finished.progress["candidates"] == 40
    assert await rows_left(database, owned) == {}
    assert await stored_keys(store) == set()
    assert len(await audit_events(database, "model.destroyed")) == 1
