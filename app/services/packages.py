"""Packages: where artifacts live. A candidate's files are an `ml_model` package named
after its model with version `candidate_<iid>`; a file's bytes sit in the artifact store
under a key that never changes, whatever happens to the package around it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, rows_by_id
from app.errors import InvalidValueError, NotFoundError
from app.models import (
    Candidate,
    Job,
    LifecycleState,
    LoggedModel,
    Model,
    ModelVersion,
    Package,
    PackageFile,
    PackageStatus,
    PackageType,
    Project,
)
from app.services import audit, jobs, policy
from app.services.actor import Actor
from app.services.keyset import Sort, SortKey
from app.storage import ArtifactStore, StoredObject, validate_key

logger = logging.getLogger(__name__)

# How a package reference names a candidate (``candidate:<iid>``) rather than a version id.
CANDIDATE_PREFIX = "candidate:"


def candidate_package_version(candidate: Candidate) -> str:
    return f"candidate_{candidate.iid}"


def new_storage_key(project_id: int) -> str:
    """A fresh object key: uploads never overwrite bytes another reader may be streaming."""
    return f"projects/{project_id}/objects/{uuid.uuid4().hex}"


async def get_or_create_package(
    session: AsyncSession,
    *,
    project_id: int,
    package_type: PackageType,
    name: str,
    version: str,
) -> Package:
    package = await session.scalar(
        sa.select(Package).where(
            Package.project_id == project_id,
            Package.package_type == package_type,
            Package.name == name,
            Package.version == version,
        )
    )
    if package is None:
        package = Package(
            project_id=project_id, package_type=package_type, name=name, version=version
        )
        session.add(package)
        await session.flush()
    return package


async def _owned_package(
    session: AsyncSession, owner: Candidate | ModelVersion | LoggedModel, *, version: str
) -> Package:
    """The `ml_model` package an owner points at, or a new one named after the owner's
    model with `version`, linked to the owner."""
    if owner.package_id is not None:
        return await session.get_one(Package, owner.package_id)
    model = await session.get_one(Model, owner.model_id)
    package = await get_or_create_package(
        session,
        project_id=owner.project_id,
        package_type=PackageType.ML_MODEL,
        name=model.name,
        version=version,
    )
    owner.package_id = package.id
    await session.flush()
    return package


async def candidate_package(session: AsyncSession, *, candidate: Candidate) -> Package:
    """The package holding a candidate's artifacts, created on first use."""
    return await _owned_package(session, candidate, version=candidate_package_version(candidate))


async def add_file(
    session: AsyncSession, *, package: Package, path: str, stored: StoredObject
) -> str | None:
    """Record a stored object as the package's file at `path`. Returns the storage key of
    the file it replaced, for the caller to delete once this is committed."""
    validate_key(path, field="path")
    existing = await session.scalar(
        sa.select(PackageFile).where(PackageFile.package_id == package.id, PackageFile.path == path)
    )
    if existing is not None:
        replaced = existing.storage_key
        existing.storage_key, existing.size, existing.sha256 = (
            stored.key,
            stored.size,
            stored.sha256,
        )
        await session.flush()
        return replaced
    session.add(
        PackageFile(
            package_id=package.id,
            path=path,
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
        )
    )
    await session.flush()
    return None


async def get_file(session: AsyncSession, *, package: Package, path: str) -> PackageFile:
    found = await session.scalar(
        sa.select(PackageFile).where(PackageFile.package_id == package.id, PackageFile.path == path)
    )
    if found is None:
        raise NotFoundError(f"No file '{path}' in {package.name} {package.version}", field="path")
    return found


async def list_files(
    session: AsyncSession, *, package: Package, prefix: str = ""
) -> list[PackageFile]:
    """Files of a package whose path starts with `prefix` (a directory, without slash)."""
    query = sa.select(PackageFile).where(PackageFile.package_id == package.id)
    if prefix:
        query = query.where(PackageFile.path.startswith(f"{prefix}/", autoescape=True))
    return list(await session.scalars(query.order_by(PackageFile.path)))


async def delete_files(session: AsyncSession, *, package: Package, path: str) -> list[str]:
    """Remove the file at `path`, or every file under it; returns their storage keys for
    the caller to delete from the store after the commit."""
    files = await session.scalars(
        sa.select(PackageFile).where(
            PackageFile.package_id == package.id,
            sa.or_(
                PackageFile.path == path,
                PackageFile.path.startswith(f"{path}/", autoescape=True),
            ),
        )
    )
    removed = list(files)
    if not removed:
        raise NotFoundError(f"No file '{path}' in {package.name} {package.version}", field="path")
    for file in removed:
        await session.delete(file)
    await session.flush()
    return [file.storage_key for file in removed]


# --- Logged models -------------------------------------------------------------------------


async def logged_model_package(session: AsyncSession, *, logged_model: LoggedModel) -> Package:
    """The package holding a logged model's files (an `ml_model` package named after the
    model it was logged in, with the logged model's id as its version), created on first
    use."""
    return await _owned_package(session, logged_model, version=logged_model.eid)


# --- Directories ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A direct child of a directory of a package: a file (with its size) or a directory."""

    name: str
    is_dir: bool
    size: int | None = None


async def list_directory(session: AsyncSession, *, package: Package, path: str = "") -> list[Entry]:
    """The files and directories directly under `path` ("" for the package's root), by
    name; empty when `path` is a file or holds nothing."""
    prefix = f"{path}/" if path else ""
    query = sa.select(PackageFile.path, PackageFile.size).where(
        PackageFile.package_id == package.id
    )
    if prefix:
        query = query.where(PackageFile.path.startswith(prefix, autoescape=True))
    entries: dict[str, Entry] = {}
    for file_path, size in await session.execute(query):
        name, separator, _rest = file_path[len(prefix) :].partition("/")
        if separator:
            entries.setdefault(name, Entry(name=name, is_dir=True))
        else:
            entries[name] = Entry(name=name, is_dir=False, size=size)
    return [entries[name] for name in sorted(entries)]


async def delete_all_files(session: AsyncSession, *, package: Package) -> list[str]:
    """Remove every file of the package; returns their storage keys for the caller to
    delete from the store after the commit."""
    keys = list(
        await session.scalars(
            sa.delete(PackageFile)
            .where(PackageFile.package_id == package.id)
            .returning(PackageFile.storage_key)
        )
    )
    return keys


async def _check_file_path_is_free(session: AsyncSession, *, package: Package, path: str) -> None:
    """A file may not sit where a directory of other files is, nor under another file:
    the package must stay a tree that downloads to a disk."""
    segments = path.split("/")
    parents = ["/".join(segments[:count]) for count in range(1, len(segments))]
    if parents:
        blocking = await session.scalar(
            sa.select(PackageFile.path)
            .where(PackageFile.package_id == package.id, PackageFile.path.in_(parents))
            .limit(1)
        )
        if blocking is not None:
            raise InvalidValueError(
                f"Cannot store '{path}': '{blocking}' is a file, not a directory", field="path"
            )
    nested = await session.scalar(
        sa.select(PackageFile.path)
        .where(
            PackageFile.package_id == package.id,
            PackageFile.path.startswith(f"{path}/", autoescape=True),
        )
        .limit(1)
    )
    if nested is not None:
        raise InvalidValueError(
            f"Cannot store '{path}': it is a directory holding '{nested}'", field="path"
        )


# --- Storing and removing bytes ------------------------------------------------------------

PackageResolver = Callable[[AsyncSession], Awaitable[Package]]
RecordedHook = Callable[[AsyncSession, Package, StoredObject], Awaitable[None]]

# Attempts at recording an upload when a concurrent upload created the same row first.
RECORD_ATTEMPTS = 3


async def store_file(
    database: Database,
    store: ArtifactStore,
    *,
    project_id: int,
    package_of: PackageResolver,
    path: str,
    body: AsyncIterable[bytes],
    size_hint: int | None = None,
    on_recorded: RecordedHook | None = None,
) -> StoredObject:
    """Stream `body` into the store under a fresh key, then record it as the file at
    `path` of the package `package_of` resolves in the recording transaction.
    `on_recorded`, if given, runs in that transaction once the file row is written
    (to enqueue follow-up work with it).

    No transaction is open while the bytes flow. If recording fails, the new object is
    deleted; the object of a file it replaced is deleted once the change is committed.
    """
    validate_key(path, field="path")
    stored = await store.put(new_storage_key(project_id), body, size_hint=size_hint)
    try:
        replaced = await _record_file(
            database, package_of=package_of, path=path, stored=stored, on_recorded=on_recorded
        )
    except BaseException:
        # Shielded: a cancelled request must not leave an object that nothing records.
        await asyncio.shield(delete_unreferenced_objects(database, store, [stored.key]))
        raise
    if replaced is not None and replaced != stored.key:
        await delete_unreferenced_objects(database, store, [replaced])
    return stored


async def _record_file(
    database: Database,
    *,
    package_of: PackageResolver,
    path: str,
    stored: StoredObject,
    on_recorded: RecordedHook | None = None,
) -> str | None:
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            async with database.session() as session:
                package = await package_of(session)
                await _check_file_path_is_free(session, package=package, path=path)
                # Lock the row being replaced, so concurrent uploads of one path queue up
                # and each learns the key it really replaced.
                await session.scalar(
                    sa.select(PackageFile)
                    .where(PackageFile.package_id == package.id, PackageFile.path == path)
                    .with_for_update()
                )
                replaced = await add_file(session, package=package, path=path, stored=stored)
                if on_recorded is not None:
                    await on_recorded(session, package, stored)
                return replaced
        except sa.exc.IntegrityError:
            # A concurrent first upload created the package or the file row: try again,
            # now finding them.
            if attempt == RECORD_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def remove_files(
    database: Database,
    store: ArtifactStore,
    *,
    package_of: Callable[[AsyncSession], Awaitable[Package | None]],
    path: str,
) -> int:
    """Remove the file at `path`, or every file under it ("" for all of the package's),
    and then their objects. Returns how many files were removed."""
    async with database.session() as session:
        package = await package_of(session)
        if package is None:
            if path:
                raise NotFoundError(f"No file '{path}'", field="path")
            return 0
        if path:
            keys = await delete_files(session, package=package, path=path)
        else:
            keys = await delete_all_files(session, package=package)
    await delete_unreferenced_objects(database, store, keys)
    return len(keys)


async def delete_unreferenced_objects(
    database: Database, store: ArtifactStore, keys: Sequence[str]
) -> None:
    """Delete the objects of `keys` that no package file records (any more). Failures are
    logged, not raised: the change they follow is already committed."""
    if not keys:
        return
    try:
        async with database.session(read_only=True) as session:
            referenced = set(
                await session.scalars(
                    sa.select(PackageFile.storage_key).where(PackageFile.storage_key.in_(keys))
                )
            )
        unreferenced = [key for key in dict.fromkeys(keys) if key not in referenced]
        if unreferenced:
            await store.delete_many(unreferenced)
    except Exception:
        logger.warning("could not delete %d artifact object(s)", len(keys), exc_info=True)


# --- Version packages ----------------------------------------------------------------------


async def version_package(session: AsyncSession, version: ModelVersion) -> Package:
    """The package holding a model version's release (an `ml_model` package named after
    its model, with the semver as its version), created on first use."""
    return await _owned_package(session, version, version=version.version)


# --- Finding what a package URL addresses --------------------------------------------------

PackageOwner = ModelVersion | Candidate


async def find_ref_owner(session: AsyncSession, *, project: Project, ref: str) -> PackageOwner:
    """The active version or candidate a ``<version ref>`` names in the project: a model
    version's id, or ``candidate:<iid>``."""
    if ref.startswith(CANDIDATE_PREFIX):
        iid = _ref_number(ref.removeprefix(CANDIDATE_PREFIX), ref)
        candidate = await session.scalar(
            sa.select(Candidate).where(
                Candidate.project_id == project.id,
                Candidate.iid == iid,
                Candidate.state == LifecycleState.ACTIVE,
            )
        )
        if candidate is None:
            raise NotFoundError(f"No candidate {iid} in project '{project.path}'", field="ref")
        return candidate
    version_id = _ref_number(ref, ref)
    version = await session.scalar(
        sa.select(ModelVersion).where(
            ModelVersion.id == version_id,
            ModelVersion.project_id == project.id,
            ModelVersion.state == LifecycleState.ACTIVE,
        )
    )
    if version is None:
        raise NotFoundError(
            f"No model version {version_id} in project '{project.path}'", field="ref"
        )
    return version


def _ref_number(text: str, ref: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise InvalidValueError(
            f"'{ref}' is no version reference: use a model version id or candidate:<iid>",
            field="ref",
        )
    return int(text)


async def owner_package(session: AsyncSession, *, owner: PackageOwner) -> Package | None:
    """The owner's package if it has one (reads never create one)."""
    if owner.package_id is None:
        return None
    return await session.get(Package, owner.package_id)


async def find_generic_package(
    session: AsyncSession, *, project: Project, name: str, version: str
) -> Package | None:
    """The project's generic package of that name and version, if it exists."""
    found: Package | None = await session.scalar(
        sa.select(Package).where(
            Package.project_id == project.id,
            Package.package_type == PackageType.GENERIC,
            Package.name == name,
            Package.version == version,
        )
    )
    return found


async def package_for_upload(session: AsyncSession, *, owner: PackageOwner) -> Package:
    """The owner's package, created on first use, in the transaction that records an
    upload; an owner deleted since the request found it is NotFoundError."""
    if isinstance(owner, ModelVersion):
        version = await session.get_one(ModelVersion, owner.id)
        if version.state is not LifecycleState.ACTIVE:
            raise NotFoundError(f"Model version {owner.id} was deleted", field="ref")
        return await version_package(session, version)
    candidate = await session.get_one(Candidate, owner.id)
    if candidate.state is not LifecycleState.ACTIVE:
        raise NotFoundError(f"Candidate {owner.iid} was deleted", field="ref")
    return await candidate_package(session, candidate=candidate)


# --- Upload verification -------------------------------------------------------------------
#
# Each upload through the package API enqueues a `finalize_upload` job that re-reads the
# stored object. The job's verdict (`progress["verdict"]`: "ok" or "error", with
# `progress["reason"]`) is written in the transaction that settles the package's status,
# so the verdicts are the record of which files failed and why.


def _finalize_jobs(package: Package) -> sa.Select[Job]:
    from app.services import jobs

    return sa.select(Job).where(
        Job.kind == jobs.FINALIZE_UPLOAD,
        Job.project_id == package.project_id,
        Job.payload["package_id"].as_integer() == package.id,
    )


async def upload_problems(session: AsyncSession, *, package: Package) -> dict[str, str]:
    """The files of the package whose newest verification failed, with the reason, as
    long as the file still holds the bytes that failed (a file uploaded again or removed
    no longer counts)."""
    newest: dict[str, Job] = {}
    for job in await session.scalars(_finalize_jobs(package).order_by(Job.id)):
        if job.progress.get("verdict") in ("ok", "error"):
            newest[str(job.payload.get("path"))] = job
    failed = {path: job for path, job in newest.items() if job.progress["verdict"] == "error"}
    if not failed:
        return {}
    current = dict(
        (
            await session.execute(
                sa.select(PackageFile.path, PackageFile.storage_key).where(
                    PackageFile.package_id == package.id, PackageFile.path.in_(list(failed))
                )
            )
        ).all()
    )
    return {
        path: str(job.progress.get("reason", "verification failed"))
        for path, job in failed.items()
        if current.get(path) == job.payload.get("storage_key")
    }


async def settle_package_status(
    session: AsyncSession, *, package: Package, finished_job_id: int | None = None
) -> PackageStatus:
    """Set the status the verdicts so far call for: `error` while a file's newest
    verification failed, `processing` while an upload awaits verification (other than
    `finished_job_id`, whose verdict is written), else `default`. A package being
    destroyed keeps its status."""
    from app.services import jobs

    if package.status is PackageStatus.PENDING_DESTRUCTION:
        return package.status
    if await upload_problems(session, package=package):
        status = PackageStatus.ERROR
    else:
        status = PackageStatus.DEFAULT
        waiting = await session.scalars(
            _finalize_jobs(package).where(Job.status.in_(jobs.UNFINISHED))
        )
        for job in waiting:
            if job.id != finished_job_id and not job.progress.get("verdict"):
                status = PackageStatus.PROCESSING
                break
    if package.status is not status:
        package.status = status
        await session.flush()
    return status


# --- Package type migration ----------------------------------------------------------------


async def request_package_type_migration(
    session: AsyncSession, *, project: Project | None, actor: Actor | None
) -> Job:
    """Enqueue the `migrate_package_types` job, which turns the legacy `generic`
    `ml_experiment_<model iid>` packages of candidates into their `ml_model` packages in
    place (see `workers.jobs.migrate_package_types`). For one project a maintainer may
    ask; for every project (`project` None) only an administrator. While such a job is
    waiting or running for the same scope, that job is returned instead of a new one."""
    if project is None:
        policy.require_admin(actor)
    else:
        await policy.authorize(session, actor, project, policy.Operation.MIGRATE_PACKAGES)
    project_id = project.id if project is not None else None
    scope = Job.project_id == project_id if project_id is not None else Job.project_id.is_(None)
    unfinished = await session.scalar(
        sa.select(Job)
        .where(Job.kind == jobs.MIGRATE_PACKAGE_TYPES, Job.status.in_(jobs.UNFINISHED), scope)
        .order_by(Job.id)
        .limit(1)
    )
    if unfinished is not None:
        return unfinished
    job = await jobs.enqueue(
        session,
        kind=jobs.MIGRATE_PACKAGE_TYPES,
        payload={} if project_id is None else {"project_id": project_id},
        project_id=project_id,
    )
    await audit.record(
        session,
        actor=actor,
        action="packages.migrate_types",
        target=job,
        project_id=project_id,
        details={"job_id": job.id},
    )
    return job


# --- Reading many at once (GraphQL's loaders) ---------------------------------------------


async def get_packages(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Package]:
    return await rows_by_id(session, Package, ids)


async def files_of(
    session: AsyncSession, *, package_ids: Collection[int]
) -> dict[int, list[PackageFile]]:
    """The files of many packages, by path."""
    found: dict[int, list[PackageFile]] = {package_id: [] for package_id in package_ids}
    if package_ids:
        rows = await session.scalars(
            sa.select(PackageFile)
            .where(PackageFile.package_id.in_(package_ids))
            .order_by(PackageFile.package_id, PackageFile.path)
        )
        for row in rows:
            found[row.package_id].append(row)
    return found


def sorted_files(package_id: int) -> tuple[sa.Select[Any], Sort]:
    """A package's files by path (a query and its order, for `keyset.read`)."""
    query = sa.select(PackageFile).where(PackageFile.package_id == package_id)
    return query, Sort([SortKey(PackageFile.path)], signature="files")


async def find_file(session: AsyncSession, *, package_id: int, path: str) -> PackageFile | None:
    """One file of a package, if it holds `path`."""
    found: PackageFile | None = await session.scalar(
        sa.select(PackageFile).where(PackageFile.package_id == package_id, PackageFile.path == path)
    )
    return found
