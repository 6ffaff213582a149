"""`delete_model`, `delete_version`, `delete_candidate` and `delete_project`: permanently
remove what a service marked pending destruction (`models.destroy_model`,
`versions.destroy_version`, `candidates.destroy_candidate`, `projects.delete_project`
with `cascade`), with everything it owns.

The work is cut into bounded steps, each in a transaction of its own that also records
the job's progress, so the counts match what is left even after a crash: metric rows in
chunks, then package files in chunks, then the owners' rows with their packages; their
params, metadata, latest metrics, inputs and aliases go with the rows through ON DELETE
CASCADE. A file's object is deleted from the artifact store before its row, so a worker
killed between the two leaves a row that a retry finds and finishes. Every step works on
what is left, so a retry simply goes on; the last step writes the audit event in the
transaction that deletes the last row, so it is written once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Candidate,
    CandidateMetric,
    Job,
    LifecycleState,
    LoggedModel,
    Model,
    ModelVersion,
    Package,
    PackageFile,
    Project,
)
from app.services import audit, jobs, packages
from workers.context import JobContext
from workers.registry import handles

logger = logging.getLogger(__name__)

# Candidates, versions or logged models per transaction (payload "batch_size").
BATCH_SIZE = 200
# Package files per transaction: one S3 DeleteObjects request (payload "file_batch_size").
FILE_BATCH_SIZE = 1000
# Metric rows per transaction; one candidate may hold millions (payload "metric_batch_size").
METRIC_BATCH_SIZE = 20_000

# What a destruction job counts in its progress and its audit event.
COUNTS = ("candidates", "metrics", "versions", "logged_models", "packages", "files", "objects")

Owner = type[Candidate] | type[ModelVersion] | type[LoggedModel]
# Every table whose rows own a package.
OWNERS: tuple[Owner, ...] = (Candidate, ModelVersion, LoggedModel)
_COUNTED_AS: dict[Owner, str] = {
    Candidate: "candidates",
    ModelVersion: "versions",
    LoggedModel: "logged_models",
}

# Called in the transaction that deletes the last rows, with the counts so far.
Finish = Callable[[AsyncSession], Awaitable[None]]


class Remover:
    """Removes candidates, versions or logged models with all they own, in bounded steps,
    and counts what it removed. `report` shapes the counts into the job's progress."""

    def __init__(
        self,
        context: JobContext,
        job: Job,
        *,
        resumed: Mapping[str, Any] | None = None,
        report: Callable[[dict[str, int]], dict[str, Any]] | None = None,
    ) -> None:
        self._context = context
        self._job = job
        self.batch_size = int(job.payload.get("batch_size", BATCH_SIZE))
        self.file_batch_size = int(job.payload.get("file_batch_size", FILE_BATCH_SIZE))
        self.metric_batch_size = int(job.payload.get("metric_batch_size", METRIC_BATCH_SIZE))
        counted = job.progress if resumed is None else resumed
        self.removed = {name: int(counted.get(name, 0)) for name in COUNTS}
        self._report = report or dict

    async def save_progress(self) -> None:
        await jobs.save_progress(self._context.database, self._job.id, self._report(self.removed))

    async def record_progress(self, session: AsyncSession) -> None:
        """The counts, in the transaction that removed what they count: a worker killed
        after its commit leaves counts a retry goes on from exactly."""
        await jobs.record_progress(session, self._job.id, self._report(self.removed))

    async def next_batch(self, owner: Owner, condition: sa.ColumnElement[bool]) -> list[int]:
        """Ids of the next batch of `owner` rows meeting `condition`."""
        async with self._context.database.session(read_only=True) as session:
            rows = await session.scalars(
                sa.select(owner.id).where(condition).order_by(owner.id).limit(self.batch_size)
            )
            return list(rows)

    async def remove(self, owner: Owner, ids: list[int], *, finish: Finish | None = None) -> None:
        """Remove these rows of `owner`: a candidate's metrics first, then the files (and
        objects) of the packages no other row holds, then the rows and those packages."""
        if owner is Candidate:
            await self._remove_metrics(ids)
        package_ids = await self._packages_held_only_by(owner, ids)
        await self._remove_files(package_ids)
        late_keys: list[str] = []
        async with self._context.database.session() as session:
            self.removed[_COUNTED_AS[owner]] += await _delete(
                session, sa.delete(owner).where(owner.id.in_(ids))
            )
            if package_ids:
                # Files recorded since the last chunk was read: their objects go after the commit.
                late_keys = list(
                    await session.scalars(
                        sa.delete(PackageFile)
                        .where(PackageFile.package_id.in_(package_ids))
                        .returning(PackageFile.storage_key)
                        .execution_options(synchronize_session=False)
                    )
                )
                self.removed["files"] += len(late_keys)
                self.removed["objects"] += len(set(late_keys))
                self.removed["packages"] += await _delete(
                    session, sa.delete(Package).where(Package.id.in_(package_ids))
                )
            await self.record_progress(session)
            if finish is not None:
                await finish(session)
        await packages.delete_unreferenced_objects(
            self._context.database, self._context.artifacts, late_keys
        )

    async def remove_packages(self, package_ids: list[int]) -> None:
        """Remove packages no candidate, version or logged model holds (a project's
        generic packages): their files and objects, then the rows."""
        await self._remove_files(package_ids)
        async with self._context.database.session() as session:
            self.removed["packages"] += await _delete(
                session, sa.delete(Package).where(Package.id.in_(package_ids))
            )
            await self.record_progress(session)

    async def _remove_metrics(self, candidate_ids: list[int]) -> None:
        """The candidates' metric history, a chunk per transaction; the rest of what a
        candidate logged is small and goes with its row."""
        while True:
            async with self._context.database.session() as session:
                chunk = (
                    sa.select(CandidateMetric.id)
                    .where(CandidateMetric.candidate_id.in_(candidate_ids))
                    .limit(self.metric_batch_size)
                )
                removed = await _delete(
                    session, sa.delete(CandidateMetric).where(CandidateMetric.id.in_(chunk))
                )
                if removed:
                    self.removed["metrics"] += removed
                    await self.record_progress(session)
            if removed < self.metric_batch_size:
                return

    async def _packages_held_only_by(self, owner: Owner, ids: list[int]) -> list[int]:
        """The packages of these rows that no other candidate, version or logged model
        holds: a package goes with the last row holding it."""
        async with self._context.database.session(read_only=True) as session:
            held = {
                package_id
                for package_id in await session.scalars(
                    sa.select(owner.package_id).where(owner.id.in_(ids))
                )
                if package_id is not None
            }
            for other in OWNERS:
                if not held:
                    break
                condition: sa.ColumnElement[bool] = other.package_id.in_(held)
                if other is owner:
                    condition = sa.and_(condition, other.id.not_in(ids))
                held -= set(await session.scalars(sa.select(other.package_id).where(condition)))
        return sorted(held)

    async def _remove_files(self, package_ids: list[int]) -> None:
        """The packages' files, a chunk at a time: the objects, then the rows."""
        if not package_ids:
            return
        database, store = self._context.database, self._context.artifacts
        while True:
            async with database.session(read_only=True) as session:
                files = (
                    await session.execute(
                        sa.select(PackageFile.id, PackageFile.storage_key)
                        .where(PackageFile.package_id.in_(package_ids))
                        .order_by(PackageFile.id)
                        .limit(self.file_batch_size)
                    )
                ).all()
                keys = {key for _, key in files}
                # An object that a file of another package records too stays.
                shared = (
                    set(
                        await session.scalars(
                            sa.select(PackageFile.storage_key).where(
                                PackageFile.storage_key.in_(keys),
                                PackageFile.package_id.not_in(package_ids),
                            )
                        )
                    )
                    if keys
                    else set()
                )
            if not files:
                return
            objects = sorted(keys - shared)
            if objects:
                # A missing object is no error: a retry deletes the same keys again.
                await store.delete_many(objects)
            async with database.session() as session:
                self.removed["files"] += await _delete(
                    session,
                    sa.delete(PackageFile).where(PackageFile.id.in_([id_ for id_, _ in files])),
                )
                self.removed["objects"] += len(objects)
                await self.record_progress(session)
            if len(files) < self.file_batch_size:
                return


async def _delete(session: AsyncSession, statement: sa.Delete) -> int:
    result = cast(
        CursorResult[Any],
        await session.execute(statement.execution_options(synchronize_session=False)),
    )
    return result.rowcount


async def _destroy_last(
    context: JobContext,
    job: Job,
    remover: Remover,
    row: Model | Project,
    *,
    action: str,
    **details: Any,
) -> None:
    """Delete the model or project whose contents `remover` removed, if it is still
    pending destruction, with its audit event in the same transaction (so it is written
    once, whatever retries came before), then save the job's final progress."""
    table = type(row)
    project_id = row.id if isinstance(row, Project) else row.project_id
    async with context.database.session() as session:
        removed = await _delete(
            session,
            sa.delete(table).where(
                table.id == row.id, table.state == LifecycleState.PENDING_DESTRUCTION
            ),
        )
        if removed:
            await audit.record(
                session,
                actor=None,
                action=action,
                target=row,
                project_id=project_id,
                details={**details, "job_id": job.id, **remover.removed},
            )
    await remover.save_progress()


def _require_pending_destruction(
    row: Project | Model | ModelVersion | Candidate, label: str
) -> None:
    # Only the destroy services set this state; anything else means a bad payload.
    if row.state is not LifecycleState.PENDING_DESTRUCTION:
        raise RuntimeError(f"{label} is {row.state.value}, not pending destruction")


@handles(jobs.DELETE_MODEL)
async def delete_model(context: JobContext, job: Job) -> None:
    """Remove a model pending destruction: its candidates, then its versions, then its
    logged models (each with their packages), then the model row with its metadata and
    aliases, recording a `model.destroyed` audit event with the counts."""
    model_id = int(job.payload["model_id"])
    async with context.database.session(read_only=True) as session:
        model = await session.get(Model, model_id)
    if model is None:
        logger.info("job %s: model %s is gone already", job.id, model_id)
        return
    _require_pending_destruction(model, f"Model {model_id}")
    remover = Remover(context, job)
    for owner in OWNERS:
        while ids := await remover.next_batch(owner, owner.model_id == model_id):
            await remover.remove(owner, ids)
    await _destroy_last(
        context, job, remover, model, action="model.destroyed", name=job.payload.get("name")
    )
    logger.info("job %s: destroyed model %s: %s", job.id, model_id, remover.removed)


@handles(jobs.DELETE_VERSION)
async def delete_version(context: JobContext, job: Job) -> None:
    """Remove a version pending destruction: its package with the package's objects, and
    the row with its metadata; records a `version.destroyed` audit event."""
    version_id = int(job.payload["version_id"])
    async with context.database.session(read_only=True) as session:
        version = await session.get(ModelVersion, version_id)
    if version is None:
        logger.info("job %s: version %s is gone already", job.id, version_id)
        return
    _require_pending_destruction(version, f"Version {version_id}")
    remover = Remover(context, job)

    async def record(session: AsyncSession) -> None:
        details = {"version": job.payload.get("version"), "job_id": job.id, **remover.removed}
        await audit.record(
            session, actor=None, action="version.destroyed", target=version, details=details
        )

    await remover.remove(ModelVersion, [version_id], finish=record)


@handles(jobs.DELETE_CANDIDATE)
async def delete_candidate(context: JobContext, job: Job) -> None:
    """Remove a candidate pending destruction: its metrics, its package with the package's
    objects, and the row with its params, metadata and inputs; records a
    `candidate.destroyed` audit event."""
    candidate_id = int(job.payload["candidate_id"])
    async with context.database.session(read_only=True) as session:
        candidate = await session.get(Candidate, candidate_id)
    if candidate is None:
        logger.info("job %s: candidate %s is gone already", job.id, candidate_id)
        return
    _require_pending_destruction(candidate, f"Candidate {candidate_id}")
    remover = Remover(context, job)

    async def record(session: AsyncSession) -> None:
        details = {"eid": job.payload.get("eid"), "job_id": job.id, **remover.removed}
        await audit.record(
            session, actor=None, action="candidate.destroyed", target=candidate, details=details
        )

    await remover.remove(Candidate, [candidate_id], finish=record)


@handles(jobs.DELETE_PROJECT)
async def delete_project(context: JobContext, job: Job) -> None:
    """Remove a project pending destruction: its candidates, versions and logged models
    (each with their packages) as a model's destruction removes them, then the packages
    left (generic ones), then the project row, whose models, memberships and webhooks go
    with it; records a `project.destroyed` audit event with the counts."""
    project_id = int(job.payload["project_id"])
    async with context.database.session(read_only=True) as session:
        project = await session.get(Project, project_id)
    if project is None:
        logger.info("job %s: project %s is gone already", job.id, project_id)
        return
    _require_pending_destruction(project, f"Project {project_id}")
    remover = Remover(context, job)
    for owner in OWNERS:
        while ids := await remover.next_batch(owner, owner.project_id == project_id):
            await remover.remove(owner, ids)
    while package_ids := await _next_packages(context, project_id, remover.batch_size):
        await remover.remove_packages(package_ids)
    await _destroy_last(
        context, job, remover, project, action="project.destroyed", path=job.payload.get("path")
    )
    logger.info("job %s: destroyed project %s: %s", job.id, project_id, remover.removed)


async def _next_packages(context: JobContext, project_id: int, limit: int) -> list[int]:
    async with context.database.session(read_only=True) as session:
        rows = await session.scalars(
            sa.select(Package.id)
            .where(Package.project_id == project_id)
            .order_by(Package.id)
            .limit(limit)
        )
        return list(rows)
