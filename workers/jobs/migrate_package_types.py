"""`migrate_package_types`: turn legacy candidate packages into `ml_model` packages.

Candidates logged before packages had a type of their own kept their files in a
`generic` package named `ml_experiment_<model iid>` with the candidate's iid as its
version. This job gives each such package the layout every candidate package has now:
type `ml_model`, the model's name, version `candidate_<iid>` (see
`app.services.packages.candidate_package`).

The package is changed in place: the same row, the same file rows, the same storage
keys. No object is copied, moved or deleted, so the artifact proxy, which finds a run's
files through `candidate.package_id`, serves them before, during and after the change.

When the candidate already has an `ml_model` package of that name and version (files
uploaded to it since), the two are merged into that one: the legacy file rows move into
it, the owners of the legacy package (the candidate, and any version or logged model)
are pointed at it, and the then empty legacy row is deleted. Where both packages hold a
file at the same path, the newer file (the later `created_at`, then the higher id) keeps
the path and the older row is dropped; its storage key, size and checksum are recorded
in the job's progress under `path_conflicts` and its object stays in the store, so no
byte is lost and an operator can restore it. Rows that already share the storage key
are the same file and are simply deduplicated.

A legacy package whose name or version is not a number, or whose candidate cannot be
found (or owns another package), is left as it is and counted as `skipped`.

The packages are taken in id order, `batch_size` per transaction; each batch writes the
job's progress (the last package id it handled, and the counts) in its own transaction,
so a worker killed at any point resumes after the last committed batch with exact
counts. A run over migrated data finds no legacy package and changes nothing.

Payload: `project_id` (optional; all projects without it), `batch_size` (default
BATCH_SIZE), `batch_pause_seconds` (default 0: a pause between batches, to spare a busy
database).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import (
    Candidate,
    Job,
    JobStatus,
    LoggedModel,
    Model,
    ModelVersion,
    Package,
    PackageFile,
    PackageType,
)
from app.services import jobs, packages
from workers.context import JobContext
from workers.registry import handles

logger = logging.getLogger(__name__)

BATCH_SIZE = 100

LEGACY_PREFIX = "ml_experiment_"
_LEGACY_NAME = re.compile(rf"{LEGACY_PREFIX}(\d+)")
_DIGITS = re.compile(r"\d+")

# At most this many path conflicts are listed in the progress; all are counted.
MAX_LISTED_CONFLICTS = 1000

COUNTS = ("migrated", "merged", "files_moved", "duplicates", "path_conflicts_count", "skipped")

# Every table whose rows point at a package: merging repoints them at the kept package.
_OWNERS = (Candidate, ModelVersion, LoggedModel)


class ClaimLostError(RuntimeError):
    """Another runner took the job over (this runner's lease expired)."""


def legacy_packages(project_id: int | None) -> sa.ColumnElement[bool]:
    """Packages in the legacy candidate layout (possibly not all of them migratable)."""
    condition = sa.and_(
        Package.package_type == PackageType.GENERIC,
        Package.name.startswith(LEGACY_PREFIX, autoescape=True),
    )
    if project_id is not None:
        condition = sa.and_(condition, Package.project_id == project_id)
    return condition


@handles(jobs.MIGRATE_PACKAGE_TYPES)
async def migrate_package_types(context: JobContext, job: Job) -> None:
    project_id = job.payload.get("project_id")
    project_id = None if project_id is None else int(project_id)
    batch_size = int(job.payload.get("batch_size", BATCH_SIZE))
    pause = float(job.payload.get("batch_pause_seconds", 0))
    progress: dict[str, Any] = {
        "last_package_id": 0,
        **dict.fromkeys(COUNTS, 0),
        "path_conflicts": [],
    } | dict(job.progress)
    if job.progress:
        logger.info("job %s: resuming after package %s", job.id, progress["last_package_id"])
    while True:
        async with context.database.session() as session:
            batch = list(
                await session.scalars(
                    sa.select(Package)
                    .where(
                        legacy_packages(project_id),
                        Package.id > progress["last_package_id"],
                    )
                    .order_by(Package.id)
                    .limit(batch_size)
                    .with_for_update()
                )
            )
            if not batch:
                break
            for package in batch:
                await _migrate(session, package, progress)
                progress["last_package_id"] = package.id
            # In the batch's transaction: the progress never runs ahead of, nor lags
            # behind, what is committed.
            await _save_progress(session, job, progress)
        if pause:
            await asyncio.sleep(pause)
    logger.info(
        "job %s: %s legacy packages migrated (%s merged), %s skipped, %s path conflicts",
        job.id,
        progress["migrated"],
        progress["merged"],
        progress["skipped"],
        progress["path_conflicts_count"],
    )


async def _save_progress(session: AsyncSession, job: Job, progress: dict[str, Any]) -> None:
    """What `jobs.save_progress` does (record progress), but inside the
    batch's transaction and fenced by the attempt: a runner that lost its claim rolls
    its batch back instead of racing the runner that took over."""
    now = utcnow()
    result = cast(
        CursorResult[Any],
        await session.execute(
            sa.update(Job)
            .where(
                Job.id == job.id,
                Job.status == JobStatus.RUNNING,
                Job.attempts == job.attempts,
            )
            .values(
                progress=dict(progress, path_conflicts=list(progress["path_conflicts"])),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise ClaimLostError(f"job {job.id}: another runner took it over")


async def _migrate(session: AsyncSession, legacy: Package, progress: dict[str, Any]) -> None:
    candidate = await _candidate_of(session, legacy)
    if candidate is None:
        progress["skipped"] += 1
        logger.warning(
            "package %s (%s %s): no candidate owns it; left as it is",
            legacy.id,
            legacy.name,
            legacy.version,
        )
        return
    model = await session.get_one(Model, candidate.model_id)
    version = packages.candidate_package_version(candidate)
    target = await session.scalar(
        sa.select(Package)
        .where(
            Package.project_id == legacy.project_id,
            Package.package_type == PackageType.ML_MODEL,
            Package.name == model.name,
            Package.version == version,
        )
        .with_for_update()
    )
    if candidate.package_id not in (None, legacy.id) and (
        target is None or candidate.package_id != target.id
    ):
        progress["skipped"] += 1
        logger.warning(
            "package %s: candidate %s owns package %s instead; left as it is",
            legacy.id,
            candidate.id,
            candidate.package_id,
        )
        return
    if target is None:
        legacy.package_type = PackageType.ML_MODEL
        legacy.name = model.name
        legacy.version = version
        candidate.package_id = legacy.id
        await session.flush()
    else:
        await _merge(session, legacy, target, progress)
        candidate.package_id = target.id
        await session.flush()
        progress["merged"] += 1
    progress["migrated"] += 1


async def _candidate_of(session: AsyncSession, legacy: Package) -> Candidate | None:
    name = _LEGACY_NAME.fullmatch(legacy.name)
    if name is None or _DIGITS.fullmatch(legacy.version) is None:
        return None
    return await session.scalar(
        sa.select(Candidate)
        .join(Model, Model.id == Candidate.model_id)
        .where(
            Candidate.project_id == legacy.project_id,
            Candidate.iid == int(legacy.version),
            Model.project_id == legacy.project_id,
            Model.iid == int(name.group(1)),
        )
        .with_for_update(of=Candidate)
    )


async def _merge(
    session: AsyncSession, legacy: Package, target: Package, progress: dict[str, Any]
) -> None:
    """Move the legacy package's files into `target` and delete the legacy row."""
    legacy_files = await _files(session, legacy)
    kept = {file.path: file for file in await _files(session, target)}
    for file in legacy_files:
        existing = kept.get(file.path)
        if existing is None:
            file.package_id = target.id
            progress["files_moved"] += 1
            continue
        if existing.storage_key == file.storage_key:
            await session.delete(file)
            progress["duplicates"] += 1
            continue
        newer, older = (file, existing) if _is_newer(file, existing) else (existing, file)
        _record_conflict(progress, target=target, legacy=legacy, kept=newer, dropped=older)
        # The dropped row goes first: (package_id, path) is unique.
        await session.delete(older)
        await session.flush()
        if newer is file:
            file.package_id = target.id
            progress["files_moved"] += 1
    await session.flush()
    for owner in _OWNERS:
        await session.execute(
            sa.update(owner)
            .where(owner.package_id == legacy.id)
            .values(package_id=target.id)
            .execution_options(synchronize_session=False)
        )
    await session.delete(legacy)
    await session.flush()


def _is_newer(file: PackageFile, other: PackageFile) -> bool:
    return (_aware(file.created_at), file.id) > (_aware(other.created_at), other.id)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _record_conflict(
    progress: dict[str, Any],
    *,
    target: Package,
    legacy: Package,
    kept: PackageFile,
    dropped: PackageFile,
) -> None:
    progress["path_conflicts_count"] += 1
    listed: list[dict[str, Any]] = progress["path_conflicts"]
    if len(listed) >= MAX_LISTED_CONFLICTS:
        return
    listed.append(
        {
            "package_id": target.id,
            "legacy_package_id": legacy.id,
            "path": kept.path,
            "kept_storage_key": kept.storage_key,
            "dropped_storage_key": dropped.storage_key,
            "dropped_size": dropped.size,
            "dropped_sha256": dropped.sha256,
            "dropped_from": "legacy" if dropped.package_id == legacy.id else "ml_model",
        }
    )
    logger.warning(
        "package %s: '%s' exists in both; kept %s, dropped %s (its object is kept)",
        target.id,
        kept.path,
        kept.storage_key,
        dropped.storage_key,
    )


async def _files(session: AsyncSession, package: Package) -> Sequence[PackageFile]:
    return list(
        await session.scalars(
            sa.select(PackageFile)
            .where(PackageFile.package_id == package.id)
            .order_by(PackageFile.id)
            .with_for_update()
        )
    )
