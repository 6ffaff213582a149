"""Getting committed jobs to a runner: arq through Redis when MODELREG_REDIS_URL is set,
else an in-process runner (embedded mode). Both run the same `run_job` on the same
table; a dispatcher connects to the database's outbox (`app.outbox`), so every job a
committed transaction enqueued is pushed at once, and a periodic sweep catches whatever
a push missed (Redis down, a crash between commit and push, a retry falling due).
`create_dispatcher` is the `DispatcherFactory` that `modelreg serve` gives the app."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from app.db import Database, utcnow
from app.models import Job, JobStatus
from app.outbox import JobDispatcher
from app.services import jobs
from app.settings import Settings
from app.storage import ArtifactStore
from workers.jobs import purge_deleted_runs
from workers.runner import run_job

logger = logging.getLogger(__name__)

# The arq function that runs a job row (see workers.settings).
RUN_JOB = "run_job"

# Rows one sweep hands out; the next sweep takes the rest.
SWEEP_LIMIT = 500

# A push happens right after a commit, inside a request: fail fast when Redis is down.
REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
REDIS_COMMAND_TIMEOUT_SECONDS = 5.0


async def create_dispatcher(
    settings: Settings, database: Database, artifacts: ArtifactStore | None = None
) -> JobDispatcher:
    """The dispatcher for this process, connected to the database's outbox until it is
    closed. In embedded mode its jobs use `artifacts`, the process's started
    store (without one, each job opens a store of its own)."""
    dispatcher: JobDispatcher
    if settings.redis_url:
        redis = ArqRedis(
            ConnectionPool.from_url(
                settings.redis_url,
                socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
                socket_timeout=REDIS_COMMAND_TIMEOUT_SECONDS,
            )
        )
        dispatcher = ArqDispatcher(settings, database, redis, owns_redis=True)
    else:
        dispatcher = InlineDispatcher(settings, database, artifacts)
    database.outbox.connect(dispatcher)
    return dispatcher


def arq_job_id(job_id: int, attempts: int) -> str:
    """The arq job id of a row's next attempt. arq ignores a job id it already holds,
    so pushing a row twice queues it once, while a retry (one attempt later) is new."""
    return f"{job_id}:{attempts}"


async def _needing_a_runner(
    database: Database, job_ids: list[int]
) -> list[tuple[int, int, dt.datetime]]:
    """(id, attempts, run_after) of the jobs among `job_ids` that need a runner; ids of
    rolled-back savepoints, finished jobs and jobs a live runner holds drop out here."""
    async with database.session(read_only=True) as session:
        rows = await session.execute(
            sa.select(Job.id, Job.attempts, Job.run_after).where(
                Job.id.in_(job_ids), jobs.needs_a_runner(utcnow())
            )
        )
        return [(job_id, attempts, run_after) for job_id, attempts, run_after in rows]


class ArqDispatcher:
    """Pushes jobs to arq workers through Redis; their cron runs the sweep."""

    def __init__(
        self, settings: Settings, database: Database, redis: ArqRedis, *, owns_redis: bool
    ) -> None:
        self._settings = settings
        self._database = database
        self._redis = redis
        self._owns_redis = owns_redis

    async def push(self, job_ids: list[int]) -> None:
        if not job_ids:
            return
        try:
            rows = await _needing_a_runner(self._database, job_ids)
        except Exception:
            logger.warning("jobs %s: not pushed, the database failed", job_ids, exc_info=True)
            return
        pushed: list[int] = []
        for job_id, attempts, run_after in rows:
            try:
                await self._enqueue(job_id, attempts, run_after)
            except Exception as error:
                # The rest would fail the same way; the sweep pushes them all later.
                left = [row[0] for row in rows if row[0] not in pushed]
                logger.warning(
                    "jobs %s: not pushed to Redis (%s: %s); the sweep will push them",
                    left,
                    type(error).__name__,
                    error,
                )
                break
            pushed.append(job_id)
        try:
            await jobs.mark_enqueued(self._database, pushed)
        except Exception:
            # Harmless: the sweep pushes them again and arq ignores the duplicate ids.
            logger.warning("jobs %s: could not be marked enqueued", pushed, exc_info=True)

    async def _enqueue(self, job_id: int, attempts: int, run_after: dt.datetime) -> None:
        enqueue = functools.partial(
            self._redis.enqueue_job,
            RUN_JOB,
            job_id,
            _job_id=arq_job_id(job_id, attempts),
            _defer_until=run_after if run_after > utcnow() else None,
        )
        try:
            await enqueue()
        except RedisConnectionError:
            # A pooled connection dies with a Redis restart and arq's WATCHed pipeline is
            # not retried by the client; a second try opens a fresh connection.
            await enqueue()

    async def sweep(self) -> int:
        requeue_after = dt.timedelta(seconds=self._settings.job_requeue_after_seconds)
        async with self._database.session(read_only=True) as session:
            due = await jobs.due_jobs(session, limit=SWEEP_LIMIT, requeue_after=requeue_after)
        await self.push([job.id for job in due])
        return len(due)

    async def start(self) -> None:
        """Nothing to start: Redis connections open on first use."""

    async def close(self) -> None:
        self._database.outbox.disconnect(self)
        if self._owns_redis:
            await self._redis.aclose(close_connection_pool=True)


class InlineDispatcher:
    """Embedded mode: runs jobs as asyncio tasks of this process. A pushed job starts
    when due; a timer sweeps the table for due rows (left by a crash or a failed push)
    and another one enqueues the periodic purge."""

    def __init__(
        self, settings: Settings, database: Database, artifacts: ArtifactStore | None = None
    ) -> None:
        self._settings = settings
        self._database = database
        self._artifacts = artifacts
        self._running: dict[int, asyncio.Task[None]] = {}
        self._timers: list[asyncio.Task[None]] = []
        self._closed = False

    async def push(self, job_ids: list[int]) -> None:
        if not job_ids:
            return
        try:
            rows = await _needing_a_runner(self._database, job_ids)
        except Exception:
            logger.warning("jobs %s: not scheduled, the database failed", job_ids, exc_info=True)
            return
        for job_id, _attempts, run_after in rows:
            self._schedule(job_id, run_after)

    async def sweep(self) -> int:
        async with self._database.session(read_only=True) as session:
            # Nothing here goes through Redis, so a row marked enqueued is no one else's.
            due = await jobs.due_jobs(session, limit=SWEEP_LIMIT, requeue_after=dt.timedelta(0))
        for job in due:
            self._schedule(job.id, job.run_after)
        return len(due)

    async def start(self) -> None:
        poll_interval = self._settings.job_poll_interval_seconds
        self._timers = [
            asyncio.create_task(self._every(poll_interval, self.sweep, "sweep")),
            asyncio.create_task(
                self._every(
                    purge_deleted_runs.PURGE_INTERVAL.total_seconds(),
                    lambda: purge_deleted_runs.schedule(self._database),
                    "purge schedule",
                )
            ),
        ]

    async def close(self) -> None:
        """Stop the timers and cancel running jobs (they are handed back for the next
        start), and wait until all of them ended."""
        self._closed = True
        self._database.outbox.disconnect(self)
        tasks = [*self._timers, *self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers = []

    def _schedule(self, job_id: int, run_after: dt.datetime) -> None:
        if self._closed or job_id in self._running:
            return
        task = asyncio.create_task(self._run(job_id, run_after), name=f"job {job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda _: self._running.pop(job_id, None))

    async def _run(self, job_id: int, run_after: dt.datetime | None) -> None:
        while run_after is not None:
            await asyncio.sleep(max(0.0, (run_after - utcnow()).total_seconds()))
            await run_job(self._database, self._settings, job_id, artifacts=self._artifacts)
            run_after = await self._retry_time(job_id)

    async def _retry_time(self, job_id: int) -> dt.datetime | None:
        """When a job that just ran is due again (a retry); None when it is finished or
        another runner holds it."""
        try:
            async with self._database.session(read_only=True) as session:
                row = (
                    await session.execute(
                        sa.select(Job.status, Job.run_after).where(Job.id == job_id)
                    )
                ).one_or_none()
        except Exception:
            logger.warning("job %s: retry not scheduled; the sweep will find it", job_id)
            return None
        if row is None:
            return None
        status, run_after = row
        return run_after if status is JobStatus.PENDING else None

    @staticmethod
    async def _every(
        interval_seconds: float, tick: Callable[[], Awaitable[object]], name: str
    ) -> None:
        while True:
            try:
                await tick()
            except Exception:
                logger.exception("embedded job runner: %s failed", name)
            await asyncio.sleep(interval_seconds)
