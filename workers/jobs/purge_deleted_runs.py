"""`purge_deleted_runs`: permanently remove candidates soft-deleted longer ago than the
retention period (MLflow's `gc`), with their metrics, params, metadata and package
objects, the way a destroyed candidate is removed (see `workers.jobs.destruction`)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from app.db import Database, utcnow
from app.models import Candidate, Job, LifecycleState
from app.services import jobs
from workers.context import JobContext
from workers.jobs.destruction import Remover
from workers.registry import handles

logger = logging.getLogger(__name__)

BATCH_SIZE = 500

# The in-process runner enqueues a purge this often; arq workers do it hourly by cron.
PURGE_INTERVAL = dt.timedelta(hours=1)


def _purgeable(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        Candidate.state == LifecycleState.DELETED,
        Candidate.deleted_at <= cutoff,
        # A model version owns its candidate; deleting the run does not remove the version.
        Candidate.model_version_id.is_(None),
    )


def _claimed() -> sa.ColumnElement[bool]:
    """Soft-deleted runs a purge claimed and did not finish (its worker died); this also
    takes soft-deleted runs whose destruction was requested, which is where they go."""
    return sa.and_(
        Candidate.state == LifecycleState.PENDING_DESTRUCTION,
        Candidate.deleted_at.is_not(None),
        Candidate.model_version_id.is_(None),
    )


def _progress(removed: dict[str, int]) -> dict[str, Any]:
    return {"purged": removed["candidates"]}


@handles(jobs.PURGE_DELETED_RUNS)
async def purge_deleted_runs(context: JobContext, job: Job) -> None:
    """Delete purgeable candidates in batches of `payload["batch_size"]` (default
    BATCH_SIZE), saving the running count after each batch."""
    batch_size = int(job.payload.get("batch_size", BATCH_SIZE))
    cutoff = utcnow() - dt.timedelta(days=context.settings.deleted_run_retention_days)
    remover = Remover(
        context, job, resumed={"candidates": job.progress.get("purged", 0)}, report=_progress
    )
    while candidate_ids := await _claim_batch(context.database, cutoff, batch_size):
        await remover.remove(Candidate, candidate_ids)
    await remover.save_progress()
    logger.info(
        "job %s: purged %s soft-deleted runs in total", job.id, remover.removed["candidates"]
    )


async def _claim_batch(database: Database, cutoff: dt.datetime, batch_size: int) -> list[int]:
    """The next batch to remove: one claimed before, else purgeable runs claimed now by
    marking them pending destruction, so that none is restored once its objects go."""
    async with database.session() as session:
        claimed = list(
            await session.scalars(
                sa.select(Candidate.id).where(_claimed()).order_by(Candidate.id).limit(batch_size)
            )
        )
        if claimed:
            return claimed
        next_batch = (
            sa.select(Candidate.id)
            .where(_purgeable(cutoff))
            .order_by(Candidate.id)
            .limit(batch_size)
        )
        rows = await session.scalars(
            sa.update(Candidate)
            # Checked again on the row itself: a run restored since the SELECT is kept.
            .where(Candidate.id.in_(next_batch), _purgeable(cutoff))
            .values(state=LifecycleState.PENDING_DESTRUCTION)
            .returning(Candidate.id)
            .execution_options(synchronize_session=False)
        )
        return sorted(rows)


async def schedule(database: Database) -> Job | None:
    """Enqueue a purge unless one is already waiting or running."""
    async with database.session() as session:
        if await jobs.has_unfinished_job(session, kind=jobs.PURGE_DELETED_RUNS):
            return None
        return await jobs.enqueue(session, kind=jobs.PURGE_DELETED_RUNS, payload={})
