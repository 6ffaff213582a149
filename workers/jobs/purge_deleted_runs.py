"""`purge_deleted_runs`: permanently remove candidates soft-deleted longer ago than the
retention period (MLflow's `gc`). Their params, metrics and metadata go with them
through the ON DELETE CASCADE foreign keys."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from app.db import Database, utcnow
from app.models import Candidate, Job, LifecycleState
from app.services import jobs
from workers.context import JobContext

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


async def purge_deleted_runs(context: JobContext, job: Job) -> None:
    """Delete purgeable candidates in batches of `payload["batch_size"]` (default
    BATCH_SIZE), one transaction each, saving the running count after each batch."""
    batch_size = int(job.payload.get("batch_size", BATCH_SIZE))
    purged = int(job.progress.get("purged", 0))
    cutoff = utcnow() - dt.timedelta(days=context.settings.deleted_run_retention_days)
    while True:
        async with context.database.session() as session:
            candidate_ids = list(
                await session.scalars(
                    sa.select(Candidate.id)
                    .where(_purgeable(cutoff))
                    .order_by(Candidate.id)
                    .limit(batch_size)
                )
            )
            if candidate_ids:
                # The candidates' package objects are removed here once artifact storage lands.
                result = cast(
                    CursorResult[Any],
                    await session.execute(
                        sa.delete(Candidate)
                        # Checked again: a run restored since the SELECT is kept.
                        .where(Candidate.id.in_(candidate_ids), _purgeable(cutoff))
                        .execution_options(synchronize_session=False)
                    ),
                )
                purged += result.rowcount
        await jobs.save_progress(context.database, job.id, {"purged": purged})
        if len(candidate_ids) < batch_size:
            break
    logger.info("job %s: purged %s soft-deleted runs in total", job.id, purged)


async def schedule(database: Database) -> Job | None:
    """Enqueue a purge unless one is already waiting or running."""
    async with database.session() as session:
        if await jobs.has_unfinished_job(session, kind=jobs.PURGE_DELETED_RUNS):
            return None
        return await jobs.enqueue(session, kind=jobs.PURGE_DELETED_RUNS, payload={})
