"""The arq worker (`modelreg worker`): its settings, built from `Settings`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func
from arq.worker import create_worker as create_arq_worker

from app.db import Database
from app.settings import Settings, SettingsError
from app.storage import ArtifactStore, create_artifact_store
from workers.dispatch import RUN_JOB, ArqDispatcher
from workers.jobs import purge_deleted_runs
from workers.runner import run_job

# arq cancels a longer run; the job is handed back and resumes from its progress.
JOB_TIMEOUT = dt.timedelta(hours=1)


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
        database.after_commit = dispatcher.push
        artifacts = create_artifact_store(settings)
        await artifacts.start()
        ctx.update(settings=settings, database=database, dispatcher=dispatcher, artifacts=artifacts)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        dispatcher: ArqDispatcher = ctx["dispatcher"]
        database: Database = ctx["database"]
        artifacts: ArtifactStore = ctx["artifacts"]
        await dispatcher.close()
        await artifacts.close()
        await database.dispose()

    return {
        # Results live in the jobs table; keeping none in Redis also lets the sweep
        # push a row again under the same arq job id.
        "functions": [func(run_job_task, name=RUN_JOB, keep_result=0, timeout=JOB_TIMEOUT)],
        "cron_jobs": [
            cron(sweep_task, second=set(range(0, 60, 10)), run_at_startup=True),
            cron(schedule_purge_task, minute=0),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for these settings; `overrides` replace any of its arguments."""
    return create_arq_worker(worker_settings(settings), **overrides)


def run_worker(settings: Settings) -> None:
    """Run an arq worker until it receives SIGINT or SIGTERM."""
    create_worker(settings).run()
