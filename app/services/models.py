"""Models: created from MLflow experiments or the registry, named by a slug.

A model has two faces, as MLflow has two namespaces: it is an experiment (`experiment`),
registered (`registered`), or both.

* A model created through the registry alone is registered and not an experiment;
  creating an experiment under its name makes it one too (`create_experiment`), and
  registering an experiment's name registers that model (`register_model`).
* The experiment face is deleted and restored on its own (`delete_model`,
  `restore_model`: MLflow's delete- and restore-experiment), its runs soft-deleted and
  restored with it. The model itself turns deleted only when it is not registered.
* Leaving the registry (`versions.unregister_model`) leaves the experiment face as it is;
  a model that is nothing else is destroyed, which frees its name at once.
* Experiment reads find experiments only, registry reads registered models only.
* Every change asks the policy for its own operation on the model's project first, for
  the `actor` given (`app.services.policy`); a caller with no user (a job, bootstrap)
  passes `OPERATOR`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rows_by_id, utcnow
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import (
    Candidate,
    Job,
    LifecycleState,
    LoggedModel,
    Model,
    ModelMetadata,
    ModelVersion,
    Project,
)
from app.search.models import (
    compile_experiment_filter,
    compile_experiment_order_by,
    compile_registered_model_filter,
    compile_registered_model_order_by,
)
from app.search.paging import Page
from app.search.sql import CodepointOrder
from app.services import audit, descriptions, jobs, key_values, policy, validation, webhooks
from app.services.actor import Actor
from app.services.keyset import Sort, SortKey
from app.services.policy import Operation
from app.services.projects import next_iid

VISIBLE_STATES = (LifecycleState.ACTIVE, LifecycleState.DELETED)


async def create_model(
    session: AsyncSession,
    *,
    project: Project,
    display_name: str,
    name: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    registered: bool = False,
    experiment: bool = True,
    actor: Actor | None,
) -> Model:
    """Create a model, an experiment unless told otherwise, once `actor` may
    (`CREATE_MODEL`). Without an explicit `name` the slug is derived from the display
    name, with a numeric suffix when another model of the project holds it."""
    await policy.authorize(session, actor, project, Operation.CREATE_MODEL)
    model = await _create_model(
        session,
        project=project,
        display_name=display_name,
        name=name,
        description=description,
        metadata=metadata,
        registered=registered,
        experiment=experiment,
        actor=actor,
    )
    await webhooks.emit(session, webhooks.registered_model_created(model, metadata))
    return model


async def _create_model(
    session: AsyncSession,
    *,
    project: Project,
    display_name: str,
    name: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    registered: bool = False,
    experiment: bool = True,
    actor: Actor | None,
) -> Model:
    display_name = validation.display_name(display_name)
    if name is not None:
        validation.slug(name)
    description_html = await descriptions.rendered(validation.description(description))
    # Taken first: it locks the project row, so the checks below cannot race.
    iid = await next_iid(session, project, "model")
    if await _find(session, project, Model.display_name == display_name) is not None:
        raise AlreadyExistsError(f"Model '{display_name}' already exists", field="name")
    if name is None:
        name = await _free_slug(session, project, validation.slugify(display_name))
    elif await _find(session, project, Model.name == name) is not None:
        raise AlreadyExistsError(f"Model name '{name}' is already taken", field="name")
    model = Model(
        project_id=project.id,
        iid=iid,
        name=name,
        display_name=display_name,
        description=description,
        description_html=description_html,
        registered=registered,
        experiment=experiment,
        created_by_id=actor.user_id if actor else None,
    )
    session.add(model)
    await session.flush()
    await audit.record(session, actor=actor, action="model.create", target=model)
    if metadata:
        await _set_model_metadata(session, model=model, items=metadata, actor=actor)
    return model


async def _find(
    session: AsyncSession, project: Project, condition: sa.ColumnElement[bool]
) -> int | None:
    return await session.scalar(
        sa.select(Model.id).where(Model.project_id == project.id, condition)
    )


async def _free_slug(session: AsyncSession, project: Project, base: str) -> str:
    """`base`, or `base_2`, `base_3`... whichever is the first one free in the project."""
    base = base[: validation.MAX_NAME_LENGTH - 8]
    taken = set(
        await session.scalars(
            sa.select(Model.name).where(
                Model.project_id == project.id,
                sa.or_(Model.name == base, Model.name.startswith(f"{base}_", autoescape=True)),
            )
        )
    )
    candidate, suffix = base, 1
    while candidate in taken:
        suffix += 1
        candidate = f"{base}_{suffix}"
    return candidate


async def get_model(
    session: AsyncSession,
    *,
    project: Project,
    iid: int | None = None,
    name: str | None = None,
    display_name: str | None = None,
    include_deleted: bool = False,
) -> Model:
    """A model of the project by its iid, slug or display name."""
    query = sa.select(Model).where(Model.project_id == project.id)
    if iid is not None:
        query = query.where(Model.iid == iid)
        label = str(iid)
    elif name is not None:
        query = query.where(Model.name == name)
        label = name
    elif display_name is not None:
        query = query.where(Model.display_name == display_name)
        label = display_name
    else:
        raise InvalidValueError("a model is looked up by iid, name or display name")
    states = VISIBLE_STATES if include_deleted else (LifecycleState.ACTIVE,)
    model = await session.scalar(query.where(Model.state.in_(states)))
    if model is None:
        raise NotFoundError(f"Model '{label}' does not exist", field="model")
    return model


async def list_models(
    session: AsyncSession,
    *,
    project: Project,
    registered_only: bool = False,
    states: Sequence[LifecycleState] = (LifecycleState.ACTIVE,),
    limit: int = 100,
    offset: int = 0,
) -> list[Model]:
    """Models of a project by iid."""
    query = sa.select(Model).where(Model.project_id == project.id, Model.state.in_(states))
    if registered_only:
        query = query.where(Model.registered.is_(True))
    rows = await session.scalars(query.order_by(Model.iid).limit(limit).offset(offset))
    return list(rows)


async def register_model(session: AsyncSession, *, model: Model, actor: Actor | None) -> Model:
    """Make a model visible to the registry (MLflow's create-registered-model on a name an
    experiment holds), once `actor` may (`CREATE_MODEL`); its candidates, versions and
    metadata stay as they are. The model of a deleted experiment is registered as well:
    it turns active, its experiment face stays deleted."""
    await policy.authorize_in(session, actor, model.project_id, Operation.CREATE_MODEL)
    if model.state not in VISIBLE_STATES:
        raise NotFoundError(f"Model '{model.display_name}' does not exist", field="model")
    if model.registered:
        raise AlreadyExistsError(
            f"Model '{model.display_name}' is already registered", field="name"
        )
    model.registered = True
    model.state = LifecycleState.ACTIVE
    model.deleted_at = None
    model.updated_at = utcnow()
    await session.flush()
    await audit.record(session, actor=actor, action="model.register", target=model)
    await webhooks.emit(session, webhooks.registered_model_created(model))
    return model


async def update_model(
    session: AsyncSession,
    *,
    model: Model,
    display_name: str | None = None,
    description: str | None = None,
    actor: Actor | None,
) -> Model:
    """Rename (the display name; the slug stays) or re-describe a model, once `actor`
    may (`UPDATE_MODEL`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.UPDATE_MODEL)
    description_html = await descriptions.rendered(validation.description(description))
    if display_name is not None:
        display_name = validation.display_name(display_name)
        if display_name != model.display_name:
            clash = await session.scalar(
                sa.select(Model.id).where(
                    Model.project_id == model.project_id, Model.display_name == display_name
                )
            )
            if clash is not None:
                raise AlreadyExistsError(f"Model '{display_name}' already exists", field="name")
            model.display_name = display_name
    if description is not None:
        model.description, model.description_html = description, description_html
    model.updated_at = utcnow()
    await session.flush()
    await audit.record(session, actor=actor, action="model.update", target=model)
    return model


async def create_experiment(
    session: AsyncSession,
    *,
    project: Project,
    display_name: str,
    metadata: Mapping[str, str] | None = None,
    actor: Actor | None,
) -> Model:
    """MLflow's create-experiment, once `actor` may (`CREATE_MODEL`): a new model, or the
    registered-only model holding the name becomes an experiment too (the metadata given
    is added to its own). A name an experiment holds, deleted or not, is
    AlreadyExistsError."""
    await policy.authorize(session, actor, project, Operation.CREATE_MODEL)
    holder = await session.scalar(
        sa.select(Model).where(
            Model.project_id == project.id,
            Model.display_name == display_name,
            Model.state.in_(VISIBLE_STATES),
        )
    )
    if holder is None or holder.experiment:
        return await _create_model(
            session, project=project, display_name=display_name, metadata=metadata, actor=actor
        )
    holder.experiment = True
    holder.experiment_deleted_at = None
    holder.updated_at = utcnow()
    await session.flush()
    await audit.record(session, actor=actor, action="model.experiment.create", target=holder)
    if metadata:
        await _set_model_metadata(session, model=holder, items=metadata, actor=actor)
    return holder


def experiment_state(model: Model) -> LifecycleState:
    """The lifecycle state of the model's experiment face."""
    deleted = model.experiment_deleted_at is not None or model.state is not LifecycleState.ACTIVE
    return LifecycleState.DELETED if deleted else LifecycleState.ACTIVE


async def delete_model(session: AsyncSession, *, model: Model, actor: Actor | None) -> Model:
    """Soft-delete the model's experiment face with its runs (MLflow's delete-experiment),
    once `actor` may (`DELETE_MODEL`); `restore_model` undoes it. The model itself turns
    deleted unless it is registered."""
    await policy.authorize_in(session, actor, model.project_id, Operation.DELETE_MODEL)
    if model.iid == 0:
        raise InvalidValueError("The Default model cannot be deleted", field="model")
    if not model.experiment or experiment_state(model) is not LifecycleState.ACTIVE:
        raise InvalidValueError(
            f"Model '{model.display_name}' is not an active experiment", field="model"
        )
    now = utcnow()
    model.experiment_deleted_at = now
    if not model.registered:
        model.state = LifecycleState.DELETED
        model.deleted_at = now
    model.updated_at = now
    # MLflow marks every run of the experiment deleted; restoring it restores them all.
    await session.execute(
        sa.update(Candidate)
        .where(Candidate.model_id == model.id, Candidate.state == LifecycleState.ACTIVE)
        .values(state=LifecycleState.DELETED, deleted_at=now)
    )
    await session.flush()
    await audit.record(session, actor=actor, action="model.delete", target=model)
    return model


async def restore_model(session: AsyncSession, *, model: Model, actor: Actor | None) -> Model:
    """Restore a deleted experiment face, its model and its runs (MLflow's
    restore-experiment), once `actor` may (`DELETE_MODEL`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.DELETE_MODEL)
    if not model.experiment or experiment_state(model) is not LifecycleState.DELETED:
        raise InvalidValueError(f"Model '{model.display_name}' is not deleted", field="model")
    model.state = LifecycleState.ACTIVE
    model.deleted_at = None
    model.experiment_deleted_at = None
    model.updated_at = utcnow()
    await session.execute(
        sa.update(Candidate)
        .where(Candidate.model_id == model.id, Candidate.state == LifecycleState.DELETED)
        .values(state=LifecycleState.ACTIVE, deleted_at=None)
    )
    await session.flush()
    await audit.record(session, actor=actor, action="model.restore", target=model)
    return model


# --- The two faces' reads (MLflow's experiments and registered models) --------------------


def _experiment_states(states: Collection[LifecycleState]) -> sa.ColumnElement[bool]:
    """Experiments whose face is in one of `states` (active, deleted)."""
    face_deleted = sa.or_(
        Model.experiment_deleted_at.is_not(None), Model.state != LifecycleState.ACTIVE
    )
    shown = []
    if LifecycleState.ACTIVE in states:
        shown.append(sa.not_(face_deleted))
    if LifecycleState.DELETED in states:
        shown.append(face_deleted)
    return sa.and_(
        Model.experiment.is_(True), Model.state.in_(VISIBLE_STATES), sa.or_(sa.false(), *shown)
    )


@functools.cache
def _experiment_lookup(by: Literal["iid", "display_name"], include_deleted: bool) -> sa.Select[Any]:
    """Every run a training script creates looks its experiment up: built once per shape
    (see `app.db`)."""
    states = VISIBLE_STATES if include_deleted else (LifecycleState.ACTIVE,)
    column = Model.iid if by == "iid" else Model.display_name
    return sa.select(Model).where(
        Model.project_id == sa.bindparam("project_id"),
        _experiment_states(states),
        column == sa.bindparam("key"),
    )


async def get_experiment(
    session: AsyncSession,
    *,
    project: Project,
    iid: int | None = None,
    display_name: str | None = None,
    include_deleted: bool = True,
) -> Model:
    """An experiment of the project by its iid (MLflow's experiment id) or its name;
    models that are not experiments are not found."""
    key: int | str
    if iid is not None:
        by, key, label = "iid", iid, str(iid)
    elif display_name is not None:
        by, key, label = "display_name", display_name, display_name
    else:
        raise InvalidValueError("an experiment is looked up by iid or name")
    model: Model | None = await session.scalar(
        _experiment_lookup(by, include_deleted), {"project_id": project.id, "key": key}
    )
    if model is None:
        raise NotFoundError(f"Experiment '{label}' does not exist", field="experiment_id")
    return model


async def get_registered_model(
    session: AsyncSession, *, project: Project, display_name: str
) -> Model:
    """A registered model of the project by its name."""
    model = await session.scalar(
        sa.select(Model).where(
            Model.project_id == project.id,
            Model.display_name == display_name,
            Model.registered.is_(True),
            Model.state == LifecycleState.ACTIVE,
        )
    )
    if model is None:
        raise NotFoundError(f"Registered model '{display_name}' does not exist", field="name")
    return model


async def search_experiments(
    session: AsyncSession,
    *,
    project: Project,
    states: Collection[LifecycleState],
    filter_string: str | None,
    order_by: Sequence[str],
    page: Page,
) -> tuple[Sequence[Model], str | None]:
    """One page of the project's experiments in `states` that match MLflow's filter, in
    its order, and the next page's token (None on the last)."""
    conditions = compile_experiment_filter(filter_string)
    orders = compile_experiment_order_by(order_by)
    query = (
        sa.select(Model)
        .where(Model.project_id == project.id, _experiment_states(states), *conditions)
        .order_by(*orders)
    )
    return page.split(list(await session.scalars(page.of(query))))


async def search_registered_models(
    session: AsyncSession,
    *,
    project: Project,
    filter_string: str | None,
    order_by: Sequence[str],
    page: Page,
) -> tuple[Sequence[Model], str | None]:
    """One page of the project's registered models that match MLflow's filter, in its
    order, and the next page's token (None on the last)."""
    conditions = compile_registered_model_filter(filter_string)
    orders = compile_registered_model_order_by(order_by)
    query = (
        sa.select(Model)
        .where(
            Model.project_id == project.id,
            Model.registered.is_(True),
            Model.state == LifecycleState.ACTIVE,
            *conditions,
        )
        .order_by(*orders)
    )
    return page.split(list(await session.scalars(page.of(query))))


async def iids_of(session: AsyncSession, *, model_ids: Collection[int]) -> dict[int, int]:
    """The iid (MLflow experiment id) of each model, whatever its state."""
    if not model_ids:
        return {}
    rows = await session.execute(sa.select(Model.id, Model.iid).where(Model.id.in_(model_ids)))
    return {model_id: iid for model_id, iid in rows}


def destroyed_name(value: str, row_id: int) -> str:
    """The name a row pending destruction holds instead of its own, so that the name is
    free for a new row at once: `<value>~destroyed~<id>`, cut to fit its column (255)."""
    suffix = f"~destroyed~{row_id}"
    return f"{value[: validation.MAX_NAME_LENGTH - len(suffix)]}{suffix}"


async def destroy_model(session: AsyncSession, *, model: Model, actor: Actor | None) -> Job:
    """Destroy a model for good, deleted or not, once `actor` may (`DELETE_MODEL`). It
    vanishes from every read at once, with its candidates, versions and logged models, and
    its name and display name are free for a new model; the returned `delete_model` job
    then removes the rows and their artifacts in batches."""
    await policy.authorize_in(session, actor, model.project_id, Operation.DELETE_MODEL)
    if model.iid == 0:
        raise InvalidValueError("The Default model cannot be destroyed", field="model")
    if model.state is LifecycleState.PENDING_DESTRUCTION:
        raise InvalidValueError(
            f"Model '{model.display_name}' is already being destroyed", field="model"
        )
    display_name = model.display_name
    now = utcnow()
    model.state = LifecycleState.PENDING_DESTRUCTION
    model.deleted_at = model.deleted_at or now
    model.updated_at = now
    model.name = destroyed_name(model.name, model.id)
    model.display_name = destroyed_name(display_name, model.id)
    # What the model owns leaves every read with it, and no write can reach it any more
    # (writes need an active owner): one indexed UPDATE per table; the job does the rest.
    for table in (Candidate, ModelVersion, LoggedModel):
        await session.execute(
            sa.update(table)
            .where(table.model_id == model.id)
            .values(state=LifecycleState.PENDING_DESTRUCTION)
        )
    job = await jobs.enqueue(
        session,
        kind=jobs.DELETE_MODEL,
        payload={"model_id": model.id, "name": display_name},
        project_id=model.project_id,
    )
    await audit.record(
        session,
        actor=actor,
        action="model.destroy",
        target=model,
        details={"name": display_name, "job_id": job.id},
    )
    await webhooks.emit(session, *webhooks.registered_model_deleted(model, display_name))
    return job


async def set_model_metadata(
    session: AsyncSession, *, model: Model, items: Mapping[str, str], actor: Actor | None
) -> None:
    """Set metadata entries, replacing existing values, in one statement, once `actor`
    may (`UPDATE_MODEL`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.UPDATE_MODEL)
    await _set_model_metadata(session, model=model, items=items, actor=actor)


async def _set_model_metadata(
    session: AsyncSession, *, model: Model, items: Mapping[str, str], actor: Actor | None
) -> None:
    entries = validation.metadata(items)
    await key_values.replace(session, ModelMetadata, owner_id=model.id, items=entries)
    await audit.record(
        session,
        actor=actor,
        action="model.metadata.set",
        target=model,
        details={"names": list(entries)},
    )


async def delete_model_metadata(
    session: AsyncSession, *, model: Model, name: str, actor: Actor | None
) -> None:
    """Delete one metadata entry, once `actor` may (`UPDATE_MODEL`)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.UPDATE_MODEL)
    if not await key_values.delete(session, ModelMetadata, owner_id=model.id, name=name):
        raise NotFoundError(f"Model '{model.display_name}' has no metadata '{name}'", field="name")
    await audit.record(
        session, actor=actor, action="model.metadata.delete", target=model, details={"name": name}
    )


async def get_model_metadata(session: AsyncSession, *, model: Model) -> dict[str, str]:
    return await key_values.read(session, ModelMetadata, owner_id=model.id)


async def get_models(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Model]:
    """Active models by id."""
    return await rows_by_id(session, Model, ids, Model.state == LifecycleState.ACTIVE)


class ModelSort(enum.Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    LATEST_VERSION = "latest_version"  # when its newest version was created


def sorted_models(
    project: Project, *, search: str | None, sort: ModelSort, ascending: bool
) -> tuple[sa.Select[Any], Sort]:
    """The active models of a project whose name or display name contains `search`
    (ignoring case), and their order; ties go by iid."""
    query = sa.select(Model).where(
        Model.project_id == project.id, Model.state == LifecycleState.ACTIVE
    )
    if search:
        query = query.where(
            sa.or_(
                Model.name.icontains(search, autoescape=True),
                Model.display_name.icontains(search, autoescape=True),
            )
        )
    expression: sa.SQLColumnExpression[Any]
    if sort is ModelSort.NAME:
        expression = CodepointOrder(Model.name)
    elif sort is ModelSort.CREATED_AT:
        expression = Model.created_at
    elif sort is ModelSort.UPDATED_AT:
        expression = Model.updated_at
    else:
        expression = (
            sa.select(sa.func.max(ModelVersion.created_at))
            .where(
                ModelVersion.model_id == Model.id,
                ModelVersion.state == LifecycleState.ACTIVE,
            )
            .scalar_subquery()
        )
    keys = [SortKey(expression, ascending), SortKey(Model.iid)]
    return query, Sort(keys, signature=f"models:{sort.value}:{int(ascending)}")


async def metadata_of(session: AsyncSession, *, model_ids: list[int]) -> dict[int, dict[str, str]]:
    return await key_values.read_many(session, ModelMetadata, owner_ids=model_ids)
