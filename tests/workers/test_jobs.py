"""Background jobs: the transactional outbox, its two transports (arq with a real Redis
and worker, and the in-process runner of embedded mode), retries, and the purge of
soft-deleted runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import NotFoundError
from app.models import (
    Candidate,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateMetric,
    CandidateParam,
    Job,
    JobStatus,
    Project,
)
from app.outbox import JobDispatcher
from app.services import candidates, jobs, models, versions
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from app.settings import Settings, SettingsError
from tests.services import RedisServer
from workers import registry
from workers.context import JobContext
from workers.dispatch import InlineDispatcher, create_dispatcher
from workers.runner import run_job
from workers.settings import create_worker, run_worker

# Bounds every wait; the tests finish long before it unless something is broken.
TIMEOUT = 20.0

RECORD = "record"
ALWAYS_FAILS = "always_fails"

# (job id, attempt, progress the handler started from) of every handler call.
Run = tuple[int, int, dict[str, Any]]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    """Two job kinds for these tests: `record` succeeds, `always_fails` raises; both
    record their calls in the returned list."""
    calls: list[Run] = []

    async def record(context: JobContext, job: Job) -> None:
        calls.append((job.id, job.attempts, dict(job.progress)))

    async def always_fails(context: JobContext, job: Job) -> None:
        calls.append((job.id, job.attempts, dict(job.progress)))
        raise RuntimeError(f"attempt {job.attempts} failed")

    monkeypatch.setattr(jobs, "JOB_KINDS", jobs.JOB_KINDS | {RECORD, ALWAYS_FAILS})
    monkeypatch.setitem(registry.HANDLERS, RECORD, record)
    monkeypatch.setitem(registry.HANDLERS, ALWAYS_FAILS, always_fails)
    return calls


def make_settings(database: Database, **values: Any) -> Settings:
    """Settings for this database, with retries a few milliseconds apart and artifacts
    in a directory of their own."""
    options: dict[str, Any] = {
        "redis_url": None,
        "artifacts": tempfile.mkdtemp(prefix="modelreg-job-artifacts-"),
        "job_retry_base_seconds": 0.01,
        "job_retry_max_seconds": 0.05,
    }
    return Settings(database_url=database.url, **(options | values))


@pytest.fixture
async def queue(redis: RedisServer) -> AsyncIterator[ArqRedis]:
    """A client of the test Redis, emptied for this test."""
    redis.start()
    client = await create_pool(RedisSettings.from_dsn(redis.url))
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


@pytest.fixture
def arq_settings(database: Database, redis: RedisServer, queue: ArqRedis) -> Settings:
    return make_settings(database, redis_url=redis.url)


@pytest.fixture
async def arq_dispatcher(
    arq_settings: Settings, database: Database
) -> AsyncIterator[JobDispatcher]:
    """The API side of arq mode: it pushes what `database` sessions commit."""
    dispatcher = await create_dispatcher(arq_settings, database)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.close()


async def run_arq_worker_until_idle(settings: Settings) -> None:
    """A real arq worker with the production settings, in this process, until its
    queue is empty. At start-up it runs the sweep, as deployed workers do."""
    worker = create_worker(settings, burst=True, poll_delay=0.01, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=TIMEOUT)
    finally:
        with warnings.catch_warnings():
            # arq 0.28 closes its Redis client with the deprecated close().
            warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
            await worker.close()


async def load(database: Database, job_id: int) -> Job:
    async with database.session(read_only=True) as session:
        return await jobs.get_job(session, job_id=job_id)


async def wait_until_finished(database: Database, job_id: int) -> Job:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        job = await load(database, job_id)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} is still {job.status.value} after {TIMEOUT}s")
        await asyncio.sleep(0.02)


async def enqueue(database: Database, kind: str, **payload: Any) -> Job:
    async with database.session() as session:
        return await jobs.enqueue(session, kind=kind, payload=payload)


# --- the outbox ----------------------------------------------------------------------


async def test_enqueueing_an_unknown_kind_is_a_programming_error(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="unknown job kind 'no_such_kind'"):
        await jobs.enqueue(session, kind="no_such_kind", payload={})
    with pytest.raises(NotFoundError):
        await jobs.get_job(session, job_id=424242)


async def test_job_enqueued_in_a_rolled_back_transaction_leaves_no_row_and_never_runs(
    database: Database,
    arq_settings: Settings,
    arq_dispatcher: JobDispatcher,
    queue: ArqRedis,
    runs: list[Run],
) -> None:
    with pytest.raises(RuntimeError, match="the request failed"):
        async with database.session() as session:
            await jobs.enqueue(session, kind=RECORD, payload={})
            raise RuntimeError("the request failed after enqueueing")

    async with database.session(read_only=True) as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    assert await queue.queued_jobs() == []
    await run_arq_worker_until_idle(arq_settings)
    assert runs == []


async def test_committed_job_is_pushed_to_arq_under_its_row_id_and_runs_to_success(
    database: Database,
    arq_settings: Settings,
    arq_dispatcher: JobDispatcher,
    queue: ArqRedis,
    runs: list[Run],
) -> None:
    job = await enqueue(database, RECORD)

    queued = await queue.queued_jobs()
    assert [(entry.job_id, entry.function, entry.args) for entry in queued] == [
        (f"{job.id}:0", "run_job", (job.id,))
    ]
    assert (await load(database, job.id)).enqueued_at is not None

    await run_arq_worker_until_idle(arq_settings)

    finished = await load(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED
    assert finished.attempts == 1
    assert finished.finished_at is not None
    assert runs == [(job.id, 1, {})]


async def test_job_committed_while_redis_is_down_is_pushed_by_the_sweep_once_it_is_back(
    database: Database,
    arq_settings: Settings,
    arq_dispatcher: JobDispatcher,
    redis: RedisServer,
    runs: list[Run],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Run one job first, so the API holds a Redis connection that the restart breaks.
    before = await enqueue(database, RECORD)
    await run_arq_worker_until_idle(arq_settings)

    redis.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="workers.dispatch"):
            job = await enqueue(database, RECORD)
        left_behind = await load(database, job.id)
        assert left_behind.status is JobStatus.PENDING
        assert left_behind.enqueued_at is None
        assert f"jobs [{job.id}]: not pushed to Redis" in caplog.text
    finally:
        redis.start()
    # The API reconnects: the next commit is pushed at once.
    after = await enqueue(database, RECORD)
    assert (await load(database, after.id)).enqueued_at is not None

    await run_arq_worker_until_idle(arq_settings)

    for finished in (before, job, after):
        assert (await load(database, finished.id)).status is JobStatus.SUCCEEDED
    assert sorted(runs) == sorted((each.id, 1, {}) for each in (before, job, after))


async def test_job_lost_by_a_redis_restart_is_pushed_again_once_its_push_is_stale(
    database: Database,
    arq_settings: Settings,
    arq_dispatcher: JobDispatcher,
    redis: RedisServer,
    runs: list[Run],
) -> None:
    job = await enqueue(database, RECORD)
    # Redis keeps nothing across a restart here: the queued job is gone.
    redis.stop()
    redis.start()

    await run_arq_worker_until_idle(arq_settings)
    assert runs == [], "pushed moments ago, so the sweep trusts the queue still has it"

    stale = arq_settings.model_copy(update={"job_requeue_after_seconds": 0})
    await run_arq_worker_until_idle(stale)
    assert (await load(database, job.id)).status is JobStatus.SUCCEEDED
    assert runs == [(job.id, 1, {})]


# --- retries -------------------------------------------------------------------------


async def test_failing_job_is_retried_and_ends_failed_with_its_error_after_max_attempts(
    database: Database,
    arq_settings: Settings,
    arq_dispatcher: JobDispatcher,
    runs: list[Run],
) -> None:
    job = await enqueue(database, ALWAYS_FAILS)

    await run_arq_worker_until_idle(arq_settings)

    failed = await load(database, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == failed.max_attempts == 5
    assert failed.last_error == "RuntimeError: attempt 5 failed"
    assert failed.finished_at is not None
    assert [attempt for _, attempt, _ in runs] == [1, 2, 3, 4, 5]


async def _let_backoff_pass(database: Database, job_id: int) -> None:
    async with database.session() as session:
        await session.execute(sa.update(Job).where(Job.id == job_id).values(run_after=utcnow()))


async def test_retry_waits_twice_as_long_after_each_failure_up_to_the_cap(
    database: Database,
) -> None:
    job = await enqueue(database, jobs.PURGE_DELETED_RUNS)
    delays: list[dt.timedelta] = []
    for attempt in range(1, 6):
        claimed = await jobs.claim(database, job.id)
        assert claimed is not None
        assert claimed.attempts == attempt
        assert await jobs.mark_failed_or_retry(
            database,
            claimed,
            error=f"attempt {attempt} failed",
            backoff_base=dt.timedelta(seconds=10),
            backoff_cap=dt.timedelta(seconds=60),
        )
        row = await load(database, job.id)
        assert row.last_error == f"attempt {attempt} failed"
        if row.status is JobStatus.PENDING:
            delays.append(row.run_after - row.updated_at)
            assert await jobs.claim(database, job.id) is None, "claimed before its backoff"
            await _let_backoff_pass(database, job.id)

    assert delays == [dt.timedelta(seconds=seconds) for seconds in (20, 40, 60, 60)]
    assert row.status is JobStatus.FAILED
    assert row.finished_at is not None
    assert await jobs.claim(database, job.id) is None


async def test_two_runners_given_the_same_job_run_it_once(
    database: Database, runs: list[Run]
) -> None:
    job = await enqueue(database, RECORD)
    claims = await asyncio.gather(jobs.claim(database, job.id), jobs.claim(database, job.id))
    assert sorted(claim is None for claim in claims) == [False, True]

    other = await enqueue(database, RECORD)
    settings = make_settings(database)
    await asyncio.gather(*(run_job(database, settings, other.id) for _ in range(2)))
    assert runs == [(other.id, 1, {})]
    assert (await load(database, other.id)).status is JobStatus.SUCCEEDED


# --- leases --------------------------------------------------------------------------


async def test_heartbeat_keeps_the_claim_of_a_job_that_outlasts_its_lease(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_by_handler: list[JobStatus] = []

    async def slow(context: JobContext, job: Job) -> None:
        # Three leases long: without renewals the job would be claimable again meanwhile.
        for _ in range(3):
            await asyncio.sleep(0.6)
            assert await jobs.claim(database, job.id) is None, "claimed while its runner lives"
            seen_by_handler.append((await load(database, job.id)).status)

    monkeypatch.setattr(jobs, "JOB_KINDS", jobs.JOB_KINDS | {"slow"})
    monkeypatch.setitem(registry.HANDLERS, "slow", slow)
    job = await enqueue(database, "slow")

    await run_job(database, make_settings(database, job_lease_seconds=0.6), job.id)

    finished = await load(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED, finished.last_error
    assert finished.attempts == 1
    assert seen_by_handler == [JobStatus.RUNNING] * 3


async def test_runner_that_lost_its_claim_stops_and_leaves_the_newer_attempt_alone(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = asyncio.Event()
    second_attempt_done = asyncio.Event()

    async def stalls_then_loses(context: JobContext, job: Job) -> None:
        if job.attempts == 2:
            await jobs.save_progress(database, job.id, {"attempt": 2})
            second_attempt_done.set()
            return
        try:
            # The first runner stalls (as if paused) while its lease expires and another
            # runner takes the job over: its heartbeat then finds the claim gone.
            async with database.session() as session:
                await session.execute(
                    sa.update(Job).where(Job.id == job.id).values(run_after=utcnow())
                )
            await run_job(database, settings, job.id)
            await asyncio.sleep(TIMEOUT)
        finally:
            stopped.set()

    monkeypatch.setattr(jobs, "JOB_KINDS", jobs.JOB_KINDS | {"stalls"})
    monkeypatch.setitem(registry.HANDLERS, "stalls", stalls_then_loses)
    settings = make_settings(database, job_lease_seconds=0.3)
    job = await enqueue(database, "stalls")

    await asyncio.wait_for(run_job(database, settings, job.id), TIMEOUT)

    assert stopped.is_set() and second_attempt_done.is_set()
    finished = await load(database, job.id)
    assert finished.status is JobStatus.SUCCEEDED
    assert finished.attempts == 2
    assert finished.progress == {"attempt": 2}
    assert finished.last_error is None


# --- embedded mode -------------------------------------------------------------------


async def test_embedded_runner_runs_jobs_after_commit_and_rows_left_by_a_crash(
    database: Database, runs: list[Run]
) -> None:
    # The poller looks once, at start; later jobs can only start through the push.
    settings = make_settings(database, job_poll_interval_seconds=3600)
    # Committed by a process that died before pushing it: no dispatcher listens yet.
    left_behind = await enqueue(database, RECORD)

    dispatcher = await create_dispatcher(settings, database)
    assert isinstance(dispatcher, InlineDispatcher)
    await dispatcher.start()
    try:
        assert (await wait_until_finished(database, left_behind.id)).status is JobStatus.SUCCEEDED
        pushed = await enqueue(database, RECORD)
        assert (await wait_until_finished(database, pushed.id)).status is JobStatus.SUCCEEDED
        async with database.session(read_only=True) as session:
            purge_id = await session.scalar(
                sa.select(Job.id).where(Job.kind == jobs.PURGE_DELETED_RUNS)
            )
        assert purge_id is not None, "the runner schedules the purge when it starts"
        assert (await wait_until_finished(database, purge_id)).status is JobStatus.SUCCEEDED
    finally:
        await dispatcher.close()

    assert database.outbox.dispatcher is None
    assert sorted(runs) == sorted([(left_behind.id, 1, {}), (pushed.id, 1, {})])


async def test_embedded_runner_retries_a_failing_job_until_its_attempts_are_used_up(
    database: Database, runs: list[Run]
) -> None:
    settings = make_settings(database, job_poll_interval_seconds=3600)
    dispatcher = await create_dispatcher(settings, database)
    await dispatcher.start()
    try:
        job = await enqueue(database, ALWAYS_FAILS)
        failed = await wait_until_finished(database, job.id)
    finally:
        await dispatcher.close()

    assert failed.status is JobStatus.FAILED
    assert failed.last_error == "RuntimeError: attempt 5 failed"
    assert [attempt for job_id, attempt, _ in runs if job_id == job.id] == [1, 2, 3, 4, 5]


async def test_job_whose_worker_died_is_resumed_from_its_saved_progress(
    database: Database, runs: list[Run]
) -> None:
    job = await enqueue(database, RECORD)
    # A worker claimed it, saved some progress and died: its lease runs out.
    claimed = await jobs.claim(database, job.id)
    assert claimed is not None
    await jobs.save_progress(database, job.id, {"done": 3})
    assert await jobs.renew_lease(database, claimed, lease=dt.timedelta(0))

    dispatcher = await create_dispatcher(make_settings(database), database)
    await dispatcher.start()
    try:
        resumed = await wait_until_finished(database, job.id)
    finally:
        await dispatcher.close()

    assert resumed.status is JobStatus.SUCCEEDED
    assert resumed.progress == {"done": 3}
    assert runs == [(job.id, 2, {"done": 3})]


def test_worker_without_redis_says_that_jobs_run_inside_serve() -> None:
    with pytest.raises(SettingsError, match=r"MODELREG_REDIS_URL.*`modelreg serve`"):
        run_worker(Settings(redis_url=None))


# --- purge_deleted_runs --------------------------------------------------------------

_CANDIDATE_TABLES: dict[str, Any] = {
    "candidate": Candidate.id,
    "params": CandidateParam.candidate_id,
    "metrics": CandidateMetric.candidate_id,
    "latest_metrics": CandidateLatestMetric.candidate_id,
    "metadata": CandidateMetadata.candidate_id,
}


async def rows_per_candidate(database: Database) -> dict[int, dict[str, int]]:
    """For every candidate id found in any candidate table: its row count per table."""
    counts: dict[int, dict[str, int]] = {}
    async with database.session(read_only=True) as session:
        for table, candidate_id in _CANDIDATE_TABLES.items():
            rows = await session.execute(
                sa.select(candidate_id, sa.func.count()).group_by(candidate_id)
            )
            for owner, count in rows:
                counts.setdefault(owner, {})[table] = count
    return counts


async def purge(database: Database, settings: Settings, **payload: Any) -> Job:
    job = await enqueue(database, jobs.PURGE_DELETED_RUNS, **payload)
    await run_job(database, settings, job.id)
    return await load(database, job.id)


async def test_purge_deleted_runs_removes_only_runs_deleted_longer_ago_than_the_retention(
    database: Database, default_project: Project
) -> None:
    async with database.session() as session:
        model = await models.create_model(
            session, project=default_project, display_name="Churn", actor=OPERATOR
        )
        expired = [
            await candidates.create_candidate(session, model=model, actor=OPERATOR)
            for _ in range(3)
        ]
        recently_deleted = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        active = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        of_a_version = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        everyone = [*expired, recently_deleted, active, of_a_version]
        for candidate in everyone:
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=[
                    MetricPoint(
                        name="loss", value=1 / step, timestamp=candidates.now_ms(), step=step
                    )
                    for step in (1, 2, 3)
                ],
                params={"learning_rate": "0.01", "epochs": "3"},
                tags={"team": "vision"},
                actor=OPERATOR,
            )
        await versions.create_version(session, model=model, candidate=of_a_version, actor=OPERATOR)
        for candidate in [*expired, recently_deleted, of_a_version]:
            await candidates.delete_candidate(session, candidate=candidate, actor=OPERATOR)
        for candidate in [*expired, of_a_version]:
            candidate.deleted_at = utcnow() - dt.timedelta(days=31)
    logged = {"candidate": 1, "params": 2, "metrics": 3, "latest_metrics": 1, "metadata": 1}
    assert await rows_per_candidate(database) == {candidate.id: logged for candidate in everyone}

    settings = make_settings(database)  # the default retention: 30 days
    first = await purge(database, settings, batch_size=2)

    assert first.status is JobStatus.SUCCEEDED
    assert first.progress == {"purged": 3}
    kept = {candidate.id: logged for candidate in (recently_deleted, active, of_a_version)}
    assert await rows_per_candidate(database) == kept

    second = await purge(database, settings, batch_size=2)
    assert second.status is JobStatus.SUCCEEDED
    assert second.progress == {"purged": 0}
    assert await rows_per_candidate(database) == kept

    # Without retention every soft-deleted run goes, but a version keeps its candidate.
    without_retention = make_settings(database, deleted_run_retention_days=0)
    assert (await purge(database, without_retention)).progress == {"purged": 1}
    assert set(await rows_per_candidate(database)) == {active.id, of_a_version.id}
