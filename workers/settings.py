"""The arq worker (`modelreg worker`): its settings, built from `Settings`, and a worker
that outlives Redis outages.

The jobs table is the truth and Redis only a transport, so a worker keeps running while
Redis is away: jobs already running go on (they need only the database), the main loop
logs the outage once and polls again until Redis answers, and the sweep then pushes
whatever Redis lost (`job_requeue_after_seconds`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.db import Database
from app.events import EventHub
from app.settings import Settings, SettingsError
from app.storage import ArtifactStore, create_artifact_store
from workers.dispatch import RUN_JOB, ArqDispatcher
from workers.health import worker_health_options
from workers.jobs import purge_deleted_runs
from workers.runner import run_job

logger = logging.getLogger(__name__)

# arq cancels a longer run; the job is handed back and resumes from its progress.
JOB_TIMEOUT = dt.timedelta(hours=1)

# What a Redis that is down, restarting or unreachable raises.
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class ResilientWorker(Worker):
    """An arq worker whose main loop survives Redis outages: arq (0.28) ends the worker
    on the first failed Redis command of a poll."""

    _redis_down = False

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_UNREACHABLE as error:
            if not self._redis_down:
                logger.warning(
                    "Redis unreachable (%s: %s); running jobs go on, polling until it is back",
                    type(error).__name__,
                    error,
                )
            self._redis_down = True
            return
        if self._redis_down:
            logger.info("Redis is back; the sweep pushes again what it lost")
            self._redis_down = False

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except REDIS_UNREACHABLE:
            # arq took a slot for the job it was starting when Redis failed, and never
            # gives it back: without this, a few outages would leave no slot at all.
            self.job_counter -= 1
            self.sem.release()
            raise


def sweep_schedule(interval_seconds: float) -> dict[str, Any]:
    """arq cron arguments running a task about every `interval_seconds` (cron fires at
    whole seconds of each minute, or whole minutes of each hour)."""
    if interval_seconds < 60:
        return {"second": set(range(0, 60, max(1, round(interval_seconds))))}
    minutes: Sequence[int] = range(0, 60, max(1, round(interval_seconds / 60)))
    return {"minute": set(minutes), "second": 0}


async def run_job_task(ctx: dict[str, Any], job_id: int) -> None:
    """The arq function: run the job row, then queue its retry if the attempt failed."""
    await run_job(ctx["database"], ctx["settings"], job_id, artifacts=ctx["artifacts"])
    dispatcher: ArqDispatcher = ctx["dispatcher"]
    await dispatcher.push([job_id])


async def sweep_task(ctx: dict[str, Any]) -> int:
    """Push due rows that never reached Redis, or reached it too long ago."""
    dispatcher: ArqDispatcher = ctx["dispatcher"]
    return await dispatcher.sweep()


async def schedule_purge_task(ctx: dict[str, Any]) -> None:
    await purge_deleted_runs.schedule(ctx["database"])


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq's WorkerSettings for these settings, as keyword arguments of `arq.worker.Worker`."""
    if not settings.redis_url:
        raise SettingsError(
            "the worker needs MODELREG_REDIS_URL; without Redis, jobs run inside "
            "`modelreg serve` and no worker is needed"
        )

    async def on_startup(ctx: dict[str, Any]) -> None:
        database = Database(settings.resolved_database_url)
        dispatcher = ArqDispatcher(settings, database, ctx["redis"], owns_redis=False)
        # Jobs that jobs enqueue are pushed after their commit, as in the API.
        database.outbox.connect(dispatcher)
        # So are the jobs' progress events, to the subscribers of every API process.
        events = EventHub(settings.redis_url)
        await events.start()
        database.outbox.connect_events(events)
        artifacts = create_artifact_store(settings)
        await artifacts.start()
        ctx.update(
            settings=settings,
            database=database,
            dispatcher=dispatcher,
            artifacts=artifacts,
            events=events,
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        dispatcher: ArqDispatcher = ctx["dispatcher"]
        database: Database = ctx["database"]
        artifacts: ArtifactStore = ctx["artifacts"]
        events: EventHub = ctx["events"]
        await dispatcher.close()
        await events.close()
        await artifacts.close()
        await database.dispose()

    return {
        # Results live in the jobs table; keeping none in Redis also lets the sweep
        # push a row again under the same arq job id.
        "functions": [func(run_job_task, name=RUN_JOB, keep_result=0, timeout=JOB_TIMEOUT)],
        "cron_jobs": [
            cron(
                sweep_task,
                **sweep_schedule(settings.job_poll_interval_seconds),
                run_at_startup=True,
            ),
            cron(schedule_purge_task, minute=0),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        # `modelreg worker --check` (the compose health check) reads this host's record.
        **worker_health_options(),
    }


def create_worker(settings: Settings, **overrides: Any) -> ResilientWorker:
    """An arq worker for these settings; `overrides` replace any of its arguments."""
    return ResilientWorker(**(worker_settings(settings) | overrides))


def run_worker(settings: Settings) -> None:
    """Run an arq worker until it receives SIGINT or SIGTERM."""
    create_worker(settings).run()
