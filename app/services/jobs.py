"""Background jobs: the transactional outbox, and the state changes the runners make.

A service enqueues a job in the transaction of the change that needs it; once that
transaction commits, the job's id is handed to the dispatcher (arq, or the in-process
runner). A runner claims
the row, runs the handler of its kind, and marks it succeeded, retried or failed. A
claim is a lease: `run_after` of a running row is when its lease expires, so a row
whose worker died becomes claimable again and resumes from its saved progress. While
the handler runs, its runner renews the lease (`renew_lease`); every change a runner
makes to its claimed row is fenced by the attempt number, so a runner whose lease
expired and whose job was claimed again changes nothing. A job's `encrypted_secret` (a
credential it needs, never in its payload) is cleared when it succeeds or fails for good.

Each change of a job's status or progress is told to the job's subscribers
(`events.job_channel`) once committed, as the `job_message` of the state it leaves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.db import ENQUEUED_JOBS_KEY, Database, rows_by_id, utcnow
from app.errors import NotFoundError
from app.models import Candidate, Job, JobStatus, LoggedModel, ModelVersion
from app.services import webhooks
from app.services.keyset import Sort, SortKey

PURGE_DELETED_RUNS = "purge_deleted_runs"
DELETE_MODEL = "delete_model"
DELETE_VERSION = "delete_version"
DELETE_CANDIDATE = "delete_candidate"
DELETE_PROJECT = "delete_project"
FINALIZE_UPLOAD = "finalize_upload"
MIGRATE_PACKAGE_TYPES = "migrate_package_types"
WEBHOOK_DELIVERY = "webhook_delivery"
IMPORT_MLFLOW = "import_mlflow"

# Every kind a worker can run: the contract with the workers, whose handlers each
# declare the kind they run (`@handles(kind)`) and must cover every one.
JOB_KINDS: frozenset[str] = frozenset(
    {PURGE_DELETED_RUNS, DELETE_MODEL, DELETE_VERSION, DELETE_CANDIDATE, DELETE_PROJECT}
) | {FINALIZE_UPLOAD, MIGRATE_PACKAGE_TYPES, WEBHOOK_DELIVERY, IMPORT_MLFLOW}

UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)

# How long a claim holds unless its runner renews it (the runner's heartbeat does).
JOB_LEASE = dt.timedelta(seconds=45)

MAX_ERROR_LENGTH = 4000


# The columns of a job its subscribers are told, and how each travels in JSON.
_TOLD_COLUMNS = ("id", "kind", "payload", "project_id", "progress", "attempts", "max_attempts")
_TOLD_TIMES = ("created_at", "finished_at")


def job_message(job: Job) -> dict[str, Any]:
    """A job as its subscribers are told it after each change (`job_from_message`)."""
    message = {column: getattr(job, column) for column in _TOLD_COLUMNS}
    message |= {column: _iso(getattr(job, column)) for column in _TOLD_TIMES}
    return message | {"status": job.status.value, "last_error": job.last_error}


def job_from_message(message: dict[str, Any]) -> Job:
    """The job a `job_message` told, as a row detached from any session (read it only)."""
    times = {
        column: None if message[column] is None else dt.datetime.fromisoformat(message[column])
        for column in _TOLD_TIMES
    }
    columns = {column: message[column] for column in _TOLD_COLUMNS}
    return Job(
        **columns, **times, status=JobStatus(message["status"]), last_error=message["last_error"]
    )


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


async def _announce(session: AsyncSession, job_id: int) -> None:
    """Tell the job's subscribers the state this transaction leaves it in, once committed,
    and its project's webhooks that it succeeded or failed for good."""
    job = await session.get_one(Job, job_id, populate_existing=True)
    events.stage(session, events.job_channel(job_id), job_message(job))
    await webhooks.emit(session, *webhooks.job_ended(job))


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    project_id: int | None = None,
    run_after: dt.datetime | None = None,
) -> Job:
    """Add a job in the caller's transaction; it is pushed to a worker after the commit
    and never exists if the transaction rolls back."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known kinds: {sorted(JOB_KINDS)}")
    job = Job(
        kind=kind,
        payload=payload,
        project_id=project_id,
        status=JobStatus.PENDING,
        run_after=run_after or utcnow(),
    )
    session.add(job)
    await session.flush()
    session.info.setdefault(ENQUEUED_JOBS_KEY, []).append(job.id)
    return job


async def get_job(session: AsyncSession, *, job_id: int) -> Job:
    """A job by id, with its status, progress and last error."""
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"Job {job_id} does not exist", field="id")
    return job


async def package_holder(
    session: AsyncSession, *, package_id: int
) -> ModelVersion | Candidate | None:
    """What holds the package that an upload's verification (`finalize_upload`) works
    on: the model version or candidate whose package it is, or for a logged model's
    package the candidate that logged it; None once nothing holds it."""
    version = await session.scalar(
        sa.select(ModelVersion).where(ModelVersion.package_id == package_id).limit(1)
    )
    if version is not None:
        return version
    candidate = await session.scalar(
        sa.select(Candidate).where(Candidate.package_id == package_id).limit(1)
    )
    if candidate is not None:
        return candidate
    return await session.scalar(
        sa.select(Candidate)
        .join(LoggedModel, LoggedModel.source_candidate_id == Candidate.id)
        .where(LoggedModel.package_id == package_id)
        .limit(1)
    )


async def has_unfinished_job(session: AsyncSession, *, kind: str) -> bool:
    """Whether a job of this kind is waiting or running."""
    job_id = await session.scalar(
        sa.select(Job.id).where(Job.kind == kind, Job.status.in_(UNFINISHED)).limit(1)
    )
    return job_id is not None


@dataclass(frozen=True)
class JobStatistics:
    """How many jobs there are of each (kind, status), and since when the job that has
    waited longest for a runner has been due (None when no job waits)."""

    counts: dict[tuple[str, JobStatus], int]
    oldest_due_since: dt.datetime | None


async def job_statistics(session: AsyncSession) -> JobStatistics:
    """Job counts by kind and status and the oldest due job, in one grouped query."""
    now = utcnow()
    waiting_since = sa.case((sa.and_(needs_a_runner(now), Job.run_after <= now), Job.run_after))
    rows = await session.execute(
        sa.select(Job.kind, Job.status, sa.func.count(), sa.func.min(waiting_since)).group_by(
            Job.kind, Job.status
        )
    )
    counts: dict[tuple[str, JobStatus], int] = {}
    oldest: dt.datetime | None = None
    for kind, status, count, due_since in rows:
        counts[(kind, status)] = count
        if due_since is not None and (oldest is None or due_since < oldest):
            oldest = due_since
    return JobStatistics(counts=counts, oldest_due_since=oldest)


def needs_a_runner(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Pending jobs, and running jobs whose lease expired (their runner died)."""
    return sa.or_(
        Job.status == JobStatus.PENDING,
        sa.and_(Job.status == JobStatus.RUNNING, Job.run_after <= now),
    )


async def due_jobs(session: AsyncSession, *, limit: int, requeue_after: dt.timedelta) -> list[Job]:
    """Jobs the sweep hands to a runner: due, needing a runner, and not in the queue
    (never pushed, or claimed since) or pushed longer ago than `requeue_after`."""
    now = utcnow()
    rows = await session.scalars(
        sa.select(Job)
        .where(
            Job.status.in_(UNFINISHED),
            Job.run_after <= now,
            sa.or_(Job.enqueued_at.is_(None), Job.enqueued_at <= now - requeue_after),
        )
        .order_by(Job.run_after, Job.id)
        .limit(limit)
    )
    return list(rows)


async def mark_enqueued(database: Database, job_ids: list[int]) -> None:
    """Record that these jobs reached the queue, so the sweep leaves them alone."""
    if not job_ids:
        return
    async with database.session() as session:
        await session.execute(
            sa.update(Job)
            # A job claimed meanwhile has left the queue already.
            .where(Job.id.in_(job_ids), Job.status == JobStatus.PENDING)
            .values(enqueued_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def claim(database: Database, job_id: int, *, lease: dt.timedelta = JOB_LEASE) -> Job | None:
    """Take a due job for this runner, or None when it is not due, finished, or held by
    another runner. The conditional UPDATE lets exactly one of two racing runners win.
    The job leaves the queue: should this runner die, the sweep hands it out again
    once the lease expires."""
    now = utcnow()
    async with database.session() as session:
        result = await _update(
            session,
            sa.update(Job)
            .where(Job.id == job_id, Job.status.in_(UNFINISHED), Job.run_after <= now)
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                run_after=now + lease,
                enqueued_at=None,
                updated_at=now,
            ),
        )
        if result.rowcount != 1:
            return None
        await _announce(session, job_id)
        return await session.get_one(Job, job_id)


async def save_progress(database: Database, job_id: int, progress: dict[str, Any]) -> None:
    """Record a running job's progress in a transaction of its own, so a retry after
    a crash resumes from here."""
    async with database.session() as session:
        await record_progress(session, job_id, progress)


async def record_progress(session: AsyncSession, job_id: int, progress: dict[str, Any]) -> None:
    """Record a running job's progress in the caller's transaction: committed with the
    work it counts, the counts a retry resumes from match what is left to do."""
    result = await _update(
        session,
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(progress=progress, updated_at=utcnow()),
    )
    if result.rowcount == 1:
        await _announce(session, job_id)


async def renew_lease(database: Database, job: Job, *, lease: dt.timedelta = JOB_LEASE) -> bool:
    """Extend a claimed job's lease to `lease` from now. False when the claim was lost
    (the lease expired and another runner took the job over, or it finished)."""
    now = utcnow()
    async with database.session() as session:
        result = await _update(session, _claimed(job).values(run_after=now + lease))
    return result.rowcount == 1


async def mark_succeeded(database: Database, job: Job) -> bool:
    """Finish a claimed job. False when the claim was lost (its lease expired and
    another runner took the job over)."""
    now = utcnow()
    async with database.session() as session:
        result = await _update(
            session,
            _claimed(job).values(
                status=JobStatus.SUCCEEDED, finished_at=now, updated_at=now, encrypted_secret=None
            ),
        )
        if result.rowcount == 1:
            await _announce(session, job.id)
    return result.rowcount == 1


async def mark_failed_or_retry(
    database: Database,
    job: Job,
    *,
    error: str,
    backoff_base: dt.timedelta,
    backoff_cap: dt.timedelta,
) -> bool:
    """Record a failed attempt: the job waits min(2**attempts * base, cap) and runs
    again while attempts remain, else it is failed. The error is kept either way.
    False when the claim was lost."""
    now = utcnow()
    values: dict[str, Any] = {"last_error": error[:MAX_ERROR_LENGTH], "updated_at": now}
    if job.attempts < job.max_attempts:
        # In float seconds: 2**attempts of a timedelta overflows for large max_attempts.
        delay = min(backoff_base.total_seconds() * 2.0**job.attempts, backoff_cap.total_seconds())
        values |= {
            "status": JobStatus.PENDING,
            "run_after": now + dt.timedelta(seconds=delay),
            "enqueued_at": None,
        }
    else:
        values |= {"status": JobStatus.FAILED, "finished_at": now, "encrypted_secret": None}
    async with database.session() as session:
        result = await _update(session, _claimed(job).values(values))
        if result.rowcount == 1:
            await _announce(session, job.id)
    return result.rowcount == 1


async def release(database: Database, job: Job) -> None:
    """Hand an interrupted job (its runner is shutting down) back for an immediate rerun."""
    now = utcnow()
    async with database.session() as session:
        result = await _update(
            session,
            _claimed(job).values(
                status=JobStatus.PENDING, run_after=now, enqueued_at=None, updated_at=now
            ),
        )
        if result.rowcount == 1:
            await _announce(session, job.id)


def _claimed(job: Job) -> sa.Update:
    # The attempt number fences the update: a runner whose lease expired and whose job
    # was claimed again must not overwrite the newer attempt.
    return sa.update(Job).where(
        Job.id == job.id, Job.status == JobStatus.RUNNING, Job.attempts == job.attempts
    )


async def _update(session: AsyncSession, statement: sa.Update) -> CursorResult[Any]:
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result)


async def get_jobs(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Job]:
    return await rows_by_id(session, Job, ids)


def sorted_project_jobs(
    project_id: int, *, statuses: Collection[JobStatus] | None
) -> tuple[sa.Select[Any], Sort]:
    """A project's jobs, newest first, only those in `statuses` when given (a query and
    its order, for `keyset.read`)."""
    query = sa.select(Job).where(Job.project_id == project_id)
    if statuses is not None:
        query = query.where(Job.status.in_(list(statuses)))
    return query, Sort([SortKey(Job.id, ascending=False)], signature="jobs")
