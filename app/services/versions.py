"""Model versions: a candidate promoted into a semver release, with aliases and stages.

Every change asks the policy for its own operation on the version's project first, for
the `actor` given (`app.services.policy`): creating a version `CREATE_VERSION`, changing
one and its metadata `UPDATE_VERSION`, destroying it `DELETE_VERSION`, aliases
`MANAGE_ALIASES`, leaving the registry `DELETE_MODEL`. A caller with no user (a job,
bootstrap) passes `OPERATOR`."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_with_conflicts, rows_by_id, utcnow
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import (
    Candidate,
    CandidateStatus,
    Job,
    LifecycleState,
    LoggedModel,
    Model,
    ModelAlias,
    ModelVersion,
    ModelVersionMetadata,
    PackageFile,
    Project,
    VersionStage,
)
from app.search.paging import Page
from app.search.versions import compile_model_version_filter, compile_model_version_order_by
from app.services import audit, descriptions, jobs, key_values, policy, validation, webhooks
from app.services import candidates as candidate_service
from app.services import logged_models as logged_model_service
from app.services.actor import Actor
from app.services.keyset import Sort, SortKey
from app.services.models import destroy_model, destroyed_name
from app.services.policy import Operation

# The source MLflow records for a version registered from a logged model.
LOGGED_MODEL_SOURCE = "models:/"


async def create_version(
    session: AsyncSession,
    *,
    model: Model,
    candidate: Candidate | None = None,
    version: str | None = None,
    description: str | None = None,
    source: str | None = None,
    metadata: Mapping[str, str] | None = None,
    logged_model: LoggedModel | None = None,
    number: int | None = None,
    actor: Actor | None,
) -> ModelVersion:
    """Create the model's next version, once `actor` may (`CREATE_VERSION`). With a
    candidate it is promoted; without one a fresh candidate is created for the version.
    The semver defaults to `<number>.0.0`. A version made from an active `logged_model`
    (its row locked) is listed in that logged model's `mlflow.modelVersions` tag.
    `number` keeps the number a version had elsewhere (a registry moving in): it must be
    above every number the model gave out, and the next new version follows it."""
    await policy.authorize_in(session, actor, model.project_id, Operation.CREATE_VERSION)
    if model.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(f"Model '{model.display_name}' is deleted", field="model")
    if version is not None:
        validation.semver(version)
    if candidate is not None:
        _check_promotable(model, candidate)
    # Rendered before the model row is locked below, which serializes the model's versions.
    description_html = await descriptions.rendered(validation.description(description))
    # Bumping the counter locks the model row, so numbers and semvers cannot race.
    chosen = number
    bump = sa.update(Model).where(Model.id == model.id)
    if chosen is not None:
        # Numbers are never reused: a kept one must be above every number given out.
        bump = bump.where(Model.last_version_number < chosen)
    number = await session.scalar(
        bump.values(
            last_version_number=Model.last_version_number + 1 if chosen is None else chosen,
            registered=True,
        ).returning(Model.last_version_number)
    )
    if number is None:
        raise AlreadyExistsError(
            f"Model '{model.display_name}' has given out version number {chosen} or a later "
            "one already",
            field="version",
        )
    taken = set(
        await session.scalars(
            sa.select(ModelVersion.version).where(ModelVersion.model_id == model.id)
        )
    )
    if version is not None and version in taken:
        raise AlreadyExistsError(
            f"Model '{model.display_name}' already has version {version}", field="version"
        )
    # The default is `<number>.0.0`, or the next free major when a chosen semver holds it.
    major = number
    while version is None and f"{major}.0.0" in taken:
        major += 1
    semver = version if version is not None else f"{major}.0.0"
    if candidate is None:
        candidate = await candidate_service.create_candidate(
            session,
            model=model,
            name=f"version-{semver}",
            status=CandidateStatus.FINISHED,
            actor=actor,
        )
    model_version = ModelVersion(
        project_id=model.project_id,
        model_id=model.id,
        number=number,
        version=semver,
        description=description,
        description_html=description_html,
        source=source,
        created_by_id=actor.user_id if actor else None,
    )
    session.add(model_version)
    await session.flush()
    candidate.model_version_id = model_version.id
    model.registered = True
    model.updated_at = utcnow()
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="version.create",
        target=model_version,
        details={"version": semver, "candidate": candidate.eid},
    )
    if metadata:
        await _set_version_metadata(session, version=model_version, items=metadata, actor=actor)
    if logged_model is not None and logged_model.state is LifecycleState.ACTIVE:
        await logged_model_service.record_model_version(
            session, logged_model=logged_model, name=model.display_name, number=number
        )
    await webhooks.emit(session, webhooks.model_version_created(model_version, candidate, metadata))
    return model_version


async def _semver_taken(session: AsyncSession, model: Model, semver: str) -> bool:
    found = await session.scalar(
        sa.select(ModelVersion.id).where(
            ModelVersion.model_id == model.id, ModelVersion.version == semver
        )
    )
    return found is not None


def _check_promotable(model: Model, candidate: Candidate) -> None:
    if candidate.project_id != model.project_id:
        raise NotFoundError(f"Candidate '{candidate.eid}' does not exist", field="candidate")
    if candidate.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(f"Candidate '{candidate.eid}' is deleted", field="candidate")
    if candidate.model_version_id is not None:
        raise AlreadyExistsError(
            f"Candidate '{candidate.eid}' is already the candidate of another version",
            field="candidate",
        )


async def get_version(
    session: AsyncSession,
    *,
    model: Model,
    number: int | None = None,
    version: str | None = None,
    alias: str | None = None,
) -> ModelVersion:
    """A version of the model by its number, its semver or an alias."""
    query = sa.select(ModelVersion).where(
        ModelVersion.model_id == model.id, ModelVersion.state == LifecycleState.ACTIVE
    )
    if number is not None:
        query, label = query.where(ModelVersion.number == number), str(number)
    elif version is not None:
        query, label = query.where(ModelVersion.version == version), version
    elif alias is not None:
        query = query.join(ModelAlias, ModelAlias.version_id == ModelVersion.id).where(
            ModelAlias.model_id == model.id, ModelAlias.alias == alias
        )
        label = f"@{alias}"
    else:
        raise InvalidValueError("a version is looked up by number, semver or alias")
    found = await session.scalar(query)
    if found is None:
        raise NotFoundError(f"Model '{model.display_name}' has no version {label}", field="version")
    return found


async def list_versions(
    session: AsyncSession, *, model: Model, limit: int = 100, offset: int = 0
) -> list[ModelVersion]:
    """Versions of a model, newest first."""
    rows = await session.scalars(
        sa.select(ModelVersion)
        .where(ModelVersion.model_id == model.id, ModelVersion.state == LifecycleState.ACTIVE)
        .order_by(ModelVersion.number.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def latest_versions(
    session: AsyncSession,
    *,
    model_ids: Sequence[int],
    stages: Collection[VersionStage] | None = None,
) -> dict[int, list[ModelVersion]]:
    """The newest version (highest number) of each model in each stage, by model, in
    number order: MLflow's latest versions. `stages` limits the stages looked at."""
    found: dict[int, list[ModelVersion]] = {model_id: [] for model_id in model_ids}
    if not model_ids:
        return found
    newest = sa.select(
        ModelVersion.model_id, sa.func.max(ModelVersion.number).label("number")
    ).where(ModelVersion.model_id.in_(model_ids), ModelVersion.state == LifecycleState.ACTIVE)
    if stages is not None:
        newest = newest.where(ModelVersion.stage.in_(stages))
    per_stage = newest.group_by(ModelVersion.model_id, ModelVersion.stage).subquery()
    rows = await session.scalars(
        sa.select(ModelVersion)
        .join(
            per_stage,
            sa.and_(
                ModelVersion.model_id == per_stage.c.model_id,
                ModelVersion.number == per_stage.c.number,
            ),
        )
        .order_by(ModelVersion.model_id, ModelVersion.number)
    )
    for row in rows:
        found[row.model_id].append(row)
    return found


async def get_version_candidate(session: AsyncSession, *, version: ModelVersion) -> Candidate:
    candidate = await session.scalar(
        sa.select(Candidate).where(Candidate.model_version_id == version.id)
    )
    if candidate is None:
        raise NotFoundError(f"Version {version.version} has no candidate")
    return candidate


async def update_version(
    session: AsyncSession,
    *,
    version: ModelVersion,
    description: str | None = None,
    stage: VersionStage | None = None,
    archive_existing_versions: bool = False,
    actor: Actor | None,
) -> ModelVersion:
    """Change a version's description or stage, once `actor` may (`UPDATE_VERSION`);
    moving one into Staging or Production can archive the versions already there
    (MLflow's transition-stage)."""
    await policy.authorize_in(session, actor, version.project_id, Operation.UPDATE_VERSION)
    if description is not None:
        version.description = validation.description(description)
        version.description_html = await descriptions.rendered(description)
    if stage is not None:
        if archive_existing_versions and stage in (VersionStage.STAGING, VersionStage.PRODUCTION):
            await session.execute(
                sa.update(ModelVersion)
                .where(
                    ModelVersion.model_id == version.model_id,
                    ModelVersion.id != version.id,
                    ModelVersion.stage == stage,
                )
                .values(stage=VersionStage.ARCHIVED, updated_at=utcnow())
            )
        version.stage = stage
    version.updated_at = utcnow()
    await session.flush()
    await audit.record(session, actor=actor, action="version.update", target=version)
    return version


async def destroy_version(
    session: AsyncSession, *, version: ModelVersion, actor: Actor | None
) -> Job:
    """Destroy a version for good, once `actor` may (`DELETE_VERSION`). It vanishes from
    every read at once and its semver is free again, while its number is never given out
    again (as MLflow's); its candidate stays as a plain candidate of the model and its
    aliases go. The returned `delete_version` job removes its package, with the package's
    files and stored objects, its metadata and the row."""
    await policy.authorize_in(session, actor, version.project_id, Operation.DELETE_VERSION)
    return await _destroy_version(session, version=version, actor=actor)


async def _destroy_version(
    session: AsyncSession, *, version: ModelVersion, actor: Actor | None
) -> Job:
    if version.state is LifecycleState.PENDING_DESTRUCTION:
        raise InvalidValueError(
            f"Version {version.version} is already being destroyed", field="version"
        )
    semver = version.version
    await session.execute(
        sa.update(Candidate)
        .where(Candidate.model_version_id == version.id)
        .values(model_version_id=None)
    )
    # Registry reads list a model's aliases without looking at their versions' state.
    await session.execute(sa.delete(ModelAlias).where(ModelAlias.version_id == version.id))
    version.state = LifecycleState.PENDING_DESTRUCTION
    version.version = destroyed_name(semver, version.id)
    version.updated_at = utcnow()
    # MLflow's delete_model_version touches its registered model's last update time.
    await session.execute(
        sa.update(Model).where(Model.id == version.model_id).values(updated_at=version.updated_at)
    )
    await session.flush()
    job = await jobs.enqueue(
        session,
        kind=jobs.DELETE_VERSION,
        payload={"version_id": version.id, "version": semver},
        project_id=version.project_id,
    )
    await audit.record(
        session,
        actor=actor,
        action="version.destroy",
        target=version,
        details={"version": semver, "job_id": job.id},
    )
    await webhooks.emit(session, webhooks.model_version_deleted(version, semver))
    return job


async def unregister_model(
    session: AsyncSession, *, model: Model, actor: Actor | None
) -> list[Job]:
    """Take a model out of the registry (MLflow's delete-registered-model) and return the
    jobs that finish it. A model that is nothing else is destroyed (`destroy_model`): its
    name is free at once. An experiment stays, with its runs and their data: each version
    is destroyed as `destroy_version` does it (its candidate stays a run), the aliases go,
    and the model's metadata stays, being the experiment's tags too. A deleted
    experiment's model turns deleted with it. Needs `DELETE_MODEL`."""
    await policy.authorize_in(session, actor, model.project_id, Operation.DELETE_MODEL)
    if not model.registered or model.state is not LifecycleState.ACTIVE:
        raise NotFoundError(f"Registered model '{model.display_name}' does not exist")
    if not model.experiment:
        return [await destroy_model(session, model=model, actor=actor)]
    started = [
        await _destroy_version(session, version=version, actor=actor)
        for version in await session.scalars(
            sa.select(ModelVersion)
            .where(ModelVersion.model_id == model.id, ModelVersion.state == LifecycleState.ACTIVE)
            .order_by(ModelVersion.number)
        )
    ]
    await session.execute(sa.delete(ModelAlias).where(ModelAlias.model_id == model.id))
    await webhooks.emit(session, *webhooks.registered_model_deleted(model, model.display_name))
    now = utcnow()
    model.registered = False
    if model.experiment_deleted_at is not None:
        model.state = LifecycleState.DELETED
        model.deleted_at = now
    model.updated_at = now
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="model.unregister",
        target=model,
        details={"job_ids": [job.id for job in started]},
    )
    return started


async def search_versions(
    session: AsyncSession,
    *,
    project: Project,
    filter_string: str | None,
    order_by: Sequence[str],
    page: Page,
) -> tuple[Sequence[ModelVersion], str | None]:
    """One page of the versions of the project's registered models that match MLflow's
    filter, in its order, and the next page's token (None on the last)."""
    conditions = compile_model_version_filter(filter_string)
    orders = compile_model_version_order_by(order_by)
    registered = sa.select(Model.id).where(
        Model.project_id == project.id,
        Model.registered.is_(True),
        Model.state == LifecycleState.ACTIVE,
    )
    query = (
        sa.select(ModelVersion)
        .where(
            ModelVersion.project_id == project.id,
            ModelVersion.state == LifecycleState.ACTIVE,
            ModelVersion.model_id.in_(registered),
            *conditions,
        )
        .order_by(*orders)
    )
    return page.split(list(await session.scalars(page.of(query))))


async def set_alias(
    session: AsyncSession,
    *,
    model: Model,
    alias: str,
    version: ModelVersion,
    actor: Actor | None,
) -> None:
    """Point an alias at a version, moving it if another version held it, once `actor`
    may (`MANAGE_ALIASES`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.MANAGE_ALIASES)
    validation.alias(alias)
    if version.model_id != model.id:
        raise InvalidValueError("An alias points at a version of its own model", field="alias")
    await webhooks.emit(session, *webhooks.alias_set(model, alias, version))
    statement = insert_with_conflicts(session, ModelAlias)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["model_id", "alias"], set_={"version_id": version.id}
        ).values(model_id=model.id, alias=alias, version_id=version.id)
    )
    await audit.record(
        session,
        actor=actor,
        action="alias.set",
        target=model,
        details={"alias": alias, "version": version.version},
    )


async def delete_alias(
    session: AsyncSession, *, model: Model, alias: str, actor: Actor | None
) -> None:
    """Delete one of the model's aliases, once `actor` may (`MANAGE_ALIASES`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.MANAGE_ALIASES)
    result = await session.execute(
        sa.delete(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFoundError(f"Model '{model.display_name}' has no alias '{alias}'", field="alias")
    await audit.record(
        session, actor=actor, action="alias.delete", target=model, details={"alias": alias}
    )
    await webhooks.emit(session, webhooks.alias_deleted(model, alias))


async def get_aliases(session: AsyncSession, *, version: ModelVersion) -> list[str]:
    rows = await session.scalars(
        sa.select(ModelAlias.alias)
        .where(ModelAlias.version_id == version.id)
        .order_by(ModelAlias.alias)
    )
    return list(rows)


async def set_version_metadata(
    session: AsyncSession,
    *,
    version: ModelVersion,
    items: Mapping[str, str],
    actor: Actor | None,
) -> None:
    """Set metadata entries, replacing existing values, in one statement, once `actor`
    may (`UPDATE_VERSION`)."""
    await policy.authorize_in(session, actor, version.project_id, Operation.UPDATE_VERSION)
    await _set_version_metadata(session, version=version, items=items, actor=actor)
    await webhooks.emit(session, *webhooks.version_tags_set(version, items))


async def _set_version_metadata(
    session: AsyncSession, *, version: ModelVersion, items: Mapping[str, str], actor: Actor | None
) -> None:
    entries = validation.metadata(items)
    await key_values.replace(session, ModelVersionMetadata, owner_id=version.id, items=entries)
    await audit.record(
        session,
        actor=actor,
        action="version.metadata.set",
        target=version,
        details={"names": list(entries)},
    )


async def delete_version_metadata(
    session: AsyncSession, *, version: ModelVersion, name: str, actor: Actor | None
) -> None:
    """Delete one metadata entry, once `actor` may (`UPDATE_VERSION`)."""
    await policy.authorize_in(session, actor, version.project_id, Operation.UPDATE_VERSION)
    if not await key_values.delete(session, ModelVersionMetadata, owner_id=version.id, name=name):
        raise NotFoundError(f"Version {version.version} has no metadata '{name}'", field="name")
    await audit.record(
        session,
        actor=actor,
        action="version.metadata.delete",
        target=version,
        details={"name": name},
    )
    await webhooks.emit(session, webhooks.version_tag_deleted(version, name))


async def get_version_metadata(session: AsyncSession, *, version: ModelVersion) -> dict[str, str]:
    return await key_values.read(session, ModelVersionMetadata, owner_id=version.id)


# --- Reading many at once (GraphQL's loaders) ---------------------------------------------


async def get_versions(session: AsyncSession, *, ids: Collection[int]) -> dict[int, ModelVersion]:
    """Active versions by id."""
    return await rows_by_id(session, ModelVersion, ids, ModelVersion.state == LifecycleState.ACTIVE)


async def count_versions(session: AsyncSession, *, model_ids: Collection[int]) -> dict[int, int]:
    counts = dict.fromkeys(model_ids, 0)
    if model_ids:
        rows = await session.execute(
            sa.select(ModelVersion.model_id, sa.func.count())
            .where(
                ModelVersion.model_id.in_(model_ids),
                ModelVersion.state == LifecycleState.ACTIVE,
            )
            .group_by(ModelVersion.model_id)
        )
        counts.update((owner, int(total)) for owner, total in rows)
    return counts


async def newest_versions(
    session: AsyncSession, *, model_ids: Collection[int]
) -> dict[int, ModelVersion]:
    """The highest-numbered active version of each model that has one."""
    if not model_ids:
        return {}
    newest = (
        sa.select(ModelVersion.model_id, sa.func.max(ModelVersion.number).label("number"))
        .where(ModelVersion.model_id.in_(model_ids), ModelVersion.state == LifecycleState.ACTIVE)
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    rows = await session.scalars(
        sa.select(ModelVersion).join(
            newest,
            sa.and_(
                ModelVersion.model_id == newest.c.model_id,
                ModelVersion.number == newest.c.number,
            ),
        )
    )
    return {row.model_id: row for row in rows}


async def aliases_of_versions(
    session: AsyncSession, *, version_ids: Collection[int]
) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {version_id: [] for version_id in version_ids}
    if version_ids:
        rows = await session.execute(
            sa.select(ModelAlias.version_id, ModelAlias.alias)
            .where(ModelAlias.version_id.in_(version_ids))
            .order_by(ModelAlias.alias)
        )
        for version_id, alias in rows:
            found[version_id].append(alias)
    return found


async def aliases_of_models(
    session: AsyncSession, *, model_ids: Collection[int]
) -> dict[int, list[tuple[str, int]]]:
    """Each model's aliases with the id of the version they point at, by alias."""
    found: dict[int, list[tuple[str, int]]] = {model_id: [] for model_id in model_ids}
    if model_ids:
        rows = await session.execute(
            sa.select(ModelAlias.model_id, ModelAlias.alias, ModelAlias.version_id)
            .where(ModelAlias.model_id.in_(model_ids))
            .order_by(ModelAlias.alias)
        )
        for model_id, alias, version_id in rows:
            found[model_id].append((alias, version_id))
    return found


async def metadata_of(
    session: AsyncSession, *, version_ids: list[int]
) -> dict[int, dict[str, str]]:
    return await key_values.read_many(session, ModelVersionMetadata, owner_ids=version_ids)


class VersionSort(enum.Enum):
    NUMBER = "number"
    CREATED_AT = "created_at"


def sorted_versions(
    model: Model, *, sort: VersionSort, ascending: bool
) -> tuple[sa.Select[Any], Sort]:
    query = sa.select(ModelVersion).where(
        ModelVersion.model_id == model.id, ModelVersion.state == LifecycleState.ACTIVE
    )
    keys = [SortKey(ModelVersion.number, ascending)]
    if sort is VersionSort.CREATED_AT:
        keys.insert(0, SortKey(ModelVersion.created_at, ascending))
    return query, Sort(keys, signature=f"versions:{sort.value}:{int(ascending)}")


async def promotion_source(session: AsyncSession, *, candidate: Candidate) -> str | None:
    """Where the model of a candidate being promoted lives, as MLflow's registry would
    record it: the newest model logged from it (MLflow 3's ``models:/m-...``), else the
    directory of an ``MLmodel`` file among its artifacts (``runs:/<run id>/<dir>``)."""
    logged = await session.scalar(
        sa.select(LoggedModel.eid)
        .where(
            LoggedModel.source_candidate_id == candidate.id,
            LoggedModel.state == LifecycleState.ACTIVE,
        )
        .order_by(LoggedModel.id.desc())
        .limit(1)
    )
    if logged is not None:
        return f"models:/{logged}"
    if candidate.package_id is None:
        return None
    paths = await session.scalars(
        sa.select(PackageFile.path)
        .where(
            PackageFile.package_id == candidate.package_id,
            sa.or_(PackageFile.path == "MLmodel", PackageFile.path.endswith("/MLmodel")),
        )
        .order_by(PackageFile.path)
        .limit(1)
    )
    path = paths.first()
    if path is None:
        return None
    directory = path.removesuffix("MLmodel").rstrip("/")
    return f"runs:/{candidate.eid}/{directory}"


@dataclass(frozen=True)
class VersionFiles:
    """Where a version's files are: its own package (uploaded through the package API),
    or, for a version registered through MLflow from a logged model (``models:/m-...``),
    that logged model's package, uploaded through MLflow's artifact proxy. Neither, for a
    version with no files."""

    package_id: int | None = None
    logged_model: LoggedModel | None = None


async def files_of_version(session: AsyncSession, *, version: ModelVersion) -> VersionFiles:
    """Where the files of a version the caller may read are."""
    if version.package_id is not None:
        return VersionFiles(package_id=version.package_id)
    source = version.source or ""
    if not source.startswith(LOGGED_MODEL_SOURCE):
        return VersionFiles()
    logged = await session.scalar(
        sa.select(LoggedModel).where(
            LoggedModel.eid == source.removeprefix(LOGGED_MODEL_SOURCE),
            LoggedModel.project_id == version.project_id,
            LoggedModel.state == LifecycleState.ACTIVE,
        )
    )
    if logged is None or logged.package_id is None:
        return VersionFiles()
    return VersionFiles(package_id=logged.package_id, logged_model=logged)
