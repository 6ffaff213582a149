"""Running one job: claim it, call its handler, record the outcome. Both transports
(arq workers and the in-process runner) call `run_job`.

A claim is a lease of `job_lease_seconds`. While the handler runs, a heartbeat renews
it every third of that, so only a runner that died (or lost the database for a whole
lease) lets its job be taken over. A heartbeat that finds the claim gone (another
runner holds a newer attempt) stops the handler: its outcome would be dropped anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable

# Importing the handlers registers each one under its kind.
import workers.jobs  # noqa: F401
from app.db import Database
from app.metrics import timing_job
from app.models import Job
from app.services import jobs
from app.settings import Settings
from app.storage import ArtifactStore, create_artifact_store
from workers import registry
from workers.context import JobContext

logger = logging.getLogger(__name__)


async def run_job(
    database: Database,
    settings: Settings,
    job_id: int,
    *,
    artifacts: ArtifactStore | None = None,
) -> None:
    """Run a job if it is due and no other runner holds it. Never raises (cancellation
    aside): a failing handler is logged with the job id and recorded on the row, to be
    retried with backoff or failed once its attempts are used up. `artifacts` is the
    process's started store; without one, a store is opened from the settings for this
    run only."""
    try:
        job = await jobs.claim(database, job_id, lease=_lease(settings))
    except Exception:
        logger.exception("job %s: could not be claimed", job_id)
        return
    if job is None:
        logger.debug("job %s: not due, finished, or held by another runner", job_id)
        return
    try:
        with timing_job(job.kind):
            await _run_claimed(database, settings, job, artifacts)
    except asyncio.CancelledError:
        # The runner is shutting down: hand the job back so the next one starts it at once.
        with contextlib.suppress(Exception):
            await jobs.release(database, job)
        raise


async def _run_claimed(
    database: Database, settings: Settings, job: Job, artifacts: ArtifactStore | None
) -> None:
    if job.attempts > job.max_attempts:
        # Only an expired lease gets here: the worker died during every attempt.
        error = f"its worker stopped during each of its {job.max_attempts} attempts"
        logger.error("job %s (%s) failed: %s", job.id, job.kind, error)
        await _record(job, _failed(database, settings, job, error))
        return
    try:
        handler = registry.handler_for(job.kind)
        async with contextlib.AsyncExitStack() as cleanup:
            if artifacts is None:
                artifacts = create_artifact_store(settings)
                await artifacts.start()
                cleanup.push_async_callback(artifacts.close)
            context = JobContext(database=database, settings=settings, artifacts=artifacts)
            await _holding_the_lease(database, settings, job, handler(context, job))
    except LeaseLostError:
        logger.warning(
            "job %s (%s): its lease expired and another runner took it over; stopped",
            job.id,
            job.kind,
        )
        return
    except Exception as error:
        logger.exception(
            "job %s (%s) failed on attempt %s of %s",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
        )
        await _record(job, _failed(database, settings, job, _describe(error)))
        return
    await _record(job, jobs.mark_succeeded(database, job))
    logger.info("job %s (%s) succeeded on attempt %s", job.id, job.kind, job.attempts)


class LeaseLostError(Exception):
    """The runner's claim on its job ended: another runner holds a newer attempt."""


def _lease(settings: Settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings.job_lease_seconds)


async def _holding_the_lease(
    database: Database, settings: Settings, job: Job, work: Awaitable[None]
) -> None:
    """Await `work` while a heartbeat renews the job's lease; raises LeaseLostError
    (after cancelling `work`) once the heartbeat finds the claim gone."""
    handler = asyncio.ensure_future(work)
    heartbeat = asyncio.create_task(_renew_until_lost(database, job, _lease(settings)))
    try:
        done, _ = await asyncio.wait({handler, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also on cancellation (a shutdown): neither task outlives this call.
        heartbeat.cancel()
        if not handler.done():
            handler.cancel()
        await asyncio.gather(handler, heartbeat, return_exceptions=True)
    if handler not in done:
        raise LeaseLostError(f"job {job.id}: claim lost")
    handler.result()


async def _renew_until_lost(database: Database, job: Job, lease: dt.timedelta) -> None:
    """Renew the lease every third of its length; return once the claim is lost. A
    database error is retried at the next beat: the lease outlasts two missed ones."""
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            held = await jobs.renew_lease(database, job, lease=lease)
        except Exception as error:
            logger.warning(
                "job %s: lease not renewed (%s: %s)", job.id, type(error).__name__, error
            )
            continue
        if not held:
            return


def _failed(database: Database, settings: Settings, job: Job, error: str) -> Awaitable[bool]:
    return jobs.mark_failed_or_retry(
        database,
        job,
        error=error,
        backoff_base=dt.timedelta(seconds=settings.job_retry_base_seconds),
        backoff_cap=dt.timedelta(seconds=settings.job_retry_max_seconds),
    )


async def _record(job: Job, outcome: Awaitable[bool]) -> None:
    try:
        applied = await outcome
    except Exception:
        # The row keeps its lease; once that expires the job runs again.
        logger.exception("job %s: could not record its outcome", job.id)
        return
    if not applied:
        logger.warning(
            "job %s: its lease expired and another runner took it over; outcome dropped", job.id
        )


def _describe(error: Exception) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
