"""Logged models (MLflow 3): a model's files and description, logged from a candidate or
on their own, before (or without) becoming a version. Their files are a package of their
own (see `packages.logged_model_package`).

Every change asks the policy for its own operation on the logged model's project first,
for the `actor` given (`app.services.policy`): creating and changing one `LOG_RUN`,
deleting it `DELETE_RUN`; a caller with no user passes `OPERATOR`. Listing a new version
in its `mlflow.modelVersions` tag is part of creating that version, checked there."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import Candidate, CandidateMetric, LifecycleState, LoggedModel, Model, Project
from app.search.sql import metric_value_condition, string_condition
from app.services import audit, policy, validation
from app.services.actor import Actor
from app.services.candidates import VISIBLE_STATES, MetricPoint, metric_point
from app.services.policy import Operation

PENDING = "LOGGED_MODEL_PENDING"
READY = "LOGGED_MODEL_READY"
UPLOAD_FAILED = "LOGGED_MODEL_UPLOAD_FAILED"
STATUSES = (PENDING, READY, UPLOAD_FAILED)

MAX_PARAMS_PER_REQUEST = 100
# The tag listing the registry versions made from a logged model (mlflow.utils.mlflow_tags).
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
MAX_TAGS_PER_REQUEST = 100
# The ids a logged model may keep when it moves in from another server.
LOGGED_MODEL_ID_PATTERN = re.compile(r"m-[A-Za-z0-9]{1,62}")


def new_eid() -> str:
    """MLflow's model id: "m-" and 32 hex characters."""
    return f"m-{uuid.uuid4().hex}"


def status(value: str) -> str:
    """A LoggedModelStatus by its name, with or without the LOGGED_MODEL_ prefix."""
    name = value.upper()
    if not name.startswith("LOGGED_MODEL_"):
        name = f"LOGGED_MODEL_{name}"
    if name not in STATUSES:
        raise InvalidValueError(
            f"Invalid logged model status '{value}': one of {', '.join(STATUSES)}",
            field="status",
        )
    return name


def _validated_params(params: Mapping[str, str]) -> dict[str, str]:
    if len(params) > MAX_PARAMS_PER_REQUEST:
        raise InvalidValueError(
            f"At most {MAX_PARAMS_PER_REQUEST} params can be logged at once", field="params"
        )
    return {
        validation.key(name, kind="param"): validation.param_value(name, value)
        for name, value in params.items()
    }


def _validated_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS_PER_REQUEST:
        raise InvalidValueError(
            f"At most {MAX_TAGS_PER_REQUEST} tags can be set at once", field="tags"
        )
    return {
        validation.key(name, kind="tag"): validation.tag_value(name, value)
        for name, value in tags.items()
    }


async def create_logged_model(
    session: AsyncSession,
    *,
    model: Model,
    name: str | None = None,
    model_type: str | None = None,
    source_candidate: Candidate | None = None,
    source_run_id: str | None = None,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    eid: str | None = None,
    actor: Actor | None,
) -> LoggedModel:
    """A logged model of `model` (an experiment), PENDING until its files are uploaded,
    once `actor` may (`LOG_RUN`). It comes from `source_candidate`, or from
    `source_run_id`: a run id that names no run of the project, kept as sent (MLflow's
    store does not check it either). Its id is new, or `eid` when it moves in from
    another server and keeps its `m-...` id (AlreadyExistsError if one holds it)."""
    await policy.authorize_in(session, actor, model.project_id, Operation.LOG_RUN)
    if model.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(
            f"Model '{model.display_name}' is deleted; restore it to log models in it",
            field="experiment_id",
        )
    if source_candidate is not None and source_candidate.project_id != model.project_id:
        raise NotFoundError(f"Run '{source_candidate.eid}' not found", field="source_run_id")
    if source_run_id is not None and len(source_run_id) > validation.MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"Source run id is longer than {validation.MAX_NAME_LENGTH} characters",
            field="source_run_id",
        )
    if eid is None:
        eid = new_eid()
    elif not LOGGED_MODEL_ID_PATTERN.fullmatch(eid):
        raise InvalidValueError(
            f"Logged model id '{eid}' is not m-<letters, digits>", field="model_id"
        )
    elif await session.scalar(sa.select(LoggedModel.id).where(LoggedModel.eid == eid)):
        raise AlreadyExistsError(f"A logged model with id '{eid}' already exists", field="model_id")
    name = name or f"model-{eid[2:10]}"
    if len(name) > validation.MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"Logged model name is longer than {validation.MAX_NAME_LENGTH} characters",
            field="name",
        )
    if model_type is not None and len(model_type) > validation.MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"Model type is longer than {validation.MAX_NAME_LENGTH} characters",
            field="model_type",
        )
    logged_model = LoggedModel(
        project_id=model.project_id,
        model_id=model.id,
        eid=eid,
        name=name,
        status=PENDING,
        model_type=model_type or None,
        source_candidate_id=source_candidate.id if source_candidate is not None else None,
        source_run_eid=source_run_id if source_candidate is None else None,
        params=_validated_params(params or {}),
        tags=_validated_tags(tags or {}),
        state=LifecycleState.ACTIVE,
    )
    session.add(logged_model)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="logged_model.create",
        target=logged_model,
        details={"model_id": eid, "name": name},
    )
    return logged_model


async def get_logged_model(
    session: AsyncSession,
    *,
    project: Project,
    eid: str,
    include_deleted: bool = False,
    for_update: bool = False,
) -> LoggedModel:
    """A logged model of the project by its MLflow model id. `for_update` locks its row,
    for read-modify-write changes of its tags and params."""
    states = (
        (LifecycleState.ACTIVE, LifecycleState.DELETED)
        if include_deleted
        else (LifecycleState.ACTIVE,)
    )
    query = sa.select(LoggedModel).where(
        LoggedModel.project_id == project.id,
        LoggedModel.eid == eid,
        LoggedModel.state.in_(states),
    )
    if for_update:
        query = query.with_for_update()
    found = await session.scalar(query)
    if found is None:
        raise NotFoundError(f"Logged model '{eid}' does not exist", field="model_id")
    return found


async def list_logged_models(
    session: AsyncSession,
    *,
    models: Sequence[Model],
    where: Sequence[sa.ColumnElement[bool]] = (),
    order_by: Sequence[sa.ColumnElement[Any]] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[LoggedModel]:
    """Active logged models of the given models, filtered and ordered by the caller's
    clauses (newest first by default)."""
    if not models:
        return []
    query = (
        sa.select(LoggedModel)
        .where(
            LoggedModel.model_id.in_([model.id for model in models]),
            LoggedModel.state == LifecycleState.ACTIVE,
            *where,
        )
        .order_by(*(order_by or (LoggedModel.created_at.desc(),)), LoggedModel.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(await session.scalars(query))


async def search_logged_models(
    session: AsyncSession,
    *,
    project: Project,
    experiment_iids: Collection[int],
    where: Sequence[sa.ColumnElement[bool]] = (),
    order_by: Sequence[sa.ColumnElement[Any]] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[LoggedModel]:
    """MLflow's search_logged_models: `list_logged_models` of the project's models with
    these iids (MLflow's experiment ids)."""
    models = list(
        await session.scalars(
            sa.select(Model).where(Model.project_id == project.id, Model.iid.in_(experiment_iids))
        )
    )
    return await list_logged_models(
        session, models=models, where=where, order_by=order_by, limit=limit, offset=offset
    )


def _require_active(logged_model: LoggedModel) -> None:
    if logged_model.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(
            f"Logged model '{logged_model.eid}' is deleted; it cannot be changed",
            field="model_id",
        )


async def finalize_logged_model(
    session: AsyncSession,
    *,
    logged_model: LoggedModel,
    status_name: str,
    message: str | None = None,
    actor: Actor | None,
) -> LoggedModel:
    """Mark the upload of a logged model's files as done (READY) or failed, once `actor`
    may (`LOG_RUN`)."""
    await policy.authorize_in(session, actor, logged_model.project_id, Operation.LOG_RUN)
    _require_active(logged_model)
    logged_model.status = status(status_name)
    logged_model.status_message = message
    logged_model.updated_at = utcnow()
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="logged_model.finalize",
        target=logged_model,
        details={"status": logged_model.status},
    )
    return logged_model


async def delete_logged_model(
    session: AsyncSession, *, logged_model: LoggedModel, actor: Actor | None
) -> LoggedModel:
    """Soft-delete, once `actor` may (`DELETE_RUN`): it disappears from searches and
    reads; its files stay in its package."""
    await policy.authorize_in(session, actor, logged_model.project_id, Operation.DELETE_RUN)
    if logged_model.state is LifecycleState.ACTIVE:
        logged_model.state = LifecycleState.DELETED
        logged_model.updated_at = utcnow()
        await session.flush()
        await audit.record(session, actor=actor, action="logged_model.delete", target=logged_model)
    return logged_model


async def set_tags(
    session: AsyncSession,
    *,
    logged_model: LoggedModel,
    tags: Mapping[str, str],
    actor: Actor | None,
) -> LoggedModel:
    """Add or replace tags (lock the row first: see `get_logged_model`), once `actor` may
    (`LOG_RUN`)."""
    await policy.authorize_in(session, actor, logged_model.project_id, Operation.LOG_RUN)
    _require_active(logged_model)
    if tags:
        logged_model.tags = {**logged_model.tags, **_validated_tags(tags)}
        logged_model.updated_at = utcnow()
        await session.flush()
    return logged_model


async def record_model_version(
    session: AsyncSession, *, logged_model: LoggedModel, name: str, number: int
) -> None:
    """List a version made from the logged model in its `mlflow.modelVersions` tag, as
    MLflow's server does (`AbstractStore.set_model_versions_tags`): a JSON list of
    {"name", "version"}, appended to, each version once (lock the row first). A value
    that is not such a list was set by a client: it is kept as it is, never overwritten."""
    entry: dict[str, Any] = {"name": name, "version": number}
    listed: Any = []
    if existing := logged_model.tags.get(MODEL_VERSIONS_TAG):
        try:
            listed = json.loads(existing)
        except ValueError:
            return
    if not isinstance(listed, list) or entry in listed:
        return
    listed = [*listed, entry]
    logged_model.tags = {**logged_model.tags, MODEL_VERSIONS_TAG: json.dumps(listed)}
    logged_model.updated_at = utcnow()
    await session.flush()


async def delete_tag(
    session: AsyncSession, *, logged_model: LoggedModel, key: str, actor: Actor | None
) -> LoggedModel:
    """Delete one tag, once `actor` may (`LOG_RUN`)."""
    await policy.authorize_in(session, actor, logged_model.project_id, Operation.LOG_RUN)
    _require_active(logged_model)
    if key not in logged_model.tags:
        raise NotFoundError(
            f"No tag with key '{key}' on logged model '{logged_model.eid}'", field="tag_key"
        )
    logged_model.tags = {name: value for name, value in logged_model.tags.items() if name != key}
    logged_model.updated_at = utcnow()
    await session.flush()
    return logged_model


async def log_params(
    session: AsyncSession,
    *,
    logged_model: LoggedModel,
    params: Mapping[str, str],
    actor: Actor | None,
) -> LoggedModel:
    """Add params, once `actor` may (`LOG_RUN`); like a candidate's, a param once logged
    keeps its value."""
    await policy.authorize_in(session, actor, logged_model.project_id, Operation.LOG_RUN)
    _require_active(logged_model)
    validated = _validated_params(params)
    changed = sorted(
        name
        for name, value in validated.items()
        if name in logged_model.params and logged_model.params[name] != value
    )
    if changed:
        raise InvalidValueError(
            f"Params of logged model '{logged_model.eid}' cannot change once logged: "
            f"{', '.join(changed)}",
            field="params",
        )
    if validated:
        logged_model.params = {**logged_model.params, **validated}
        logged_model.updated_at = utcnow()
        await session.flush()
    return logged_model


async def get_metrics_of(
    session: AsyncSession, *, logged_models: Sequence[LoggedModel]
) -> dict[int, list[tuple[str, MetricPoint]]]:
    """Every point logged for each logged model by the runs of its project, with the run
    id that logged it, in one query: MLflow's logged model metrics (its store keeps each
    such point, not only the latest)."""
    found: dict[int, list[tuple[str, MetricPoint]]] = {row.id: [] for row in logged_models}
    by_eid = {(row.project_id, row.eid): row.id for row in logged_models}
    if not by_eid:
        return found
    rows = await session.execute(
        sa.select(Candidate.project_id, Candidate.eid, CandidateMetric)
        .join(Candidate, Candidate.id == CandidateMetric.candidate_id)
        .where(
            CandidateMetric.logged_model_eid.in_([eid for _, eid in by_eid]),
            Candidate.state.in_(VISIBLE_STATES),
        )
        .order_by(
            CandidateMetric.name,
            CandidateMetric.step,
            CandidateMetric.timestamp,
            CandidateMetric.id,
        )
    )
    for project_id, run_eid, metric in rows:
        logged_model_id = by_eid.get((project_id, metric.logged_model_eid or ""))
        # A run of another project naming this id does not speak for it.
        if logged_model_id is not None:
            found[logged_model_id].append((run_eid, metric_point(metric)))
    return found


async def logged_models_of_candidates(
    session: AsyncSession, *, candidate_ids: Collection[int]
) -> dict[int, list[LoggedModel]]:
    """The active logged models each candidate is the source run of, oldest first."""
    found: dict[int, list[LoggedModel]] = {candidate_id: [] for candidate_id in candidate_ids}
    if candidate_ids:
        rows = await session.scalars(
            sa.select(LoggedModel)
            .where(
                LoggedModel.source_candidate_id.in_(candidate_ids),
                LoggedModel.state == LifecycleState.ACTIVE,
            )
            .order_by(LoggedModel.created_at, LoggedModel.id)
        )
        for row in rows:
            assert row.source_candidate_id is not None
            found[row.source_candidate_id].append(row)
    return found


async def metrics_of(
    session: AsyncSession, *, logged_models: Sequence[LoggedModel]
) -> dict[LoggedModel, list[MetricPoint]]:
    """The metric points of each logged model, as `get_metrics_of` finds them, keyed by
    the logged model itself (for a loader given the rows another batch read)."""
    found = await get_metrics_of(session, logged_models=logged_models)
    return {row: [point for _run_eid, point in found[row.id]] for row in logged_models}


# --- Search by metrics, params and tags ---------------------------------------------------
#
# MLflow's store (`search_logged_models`) joins the logged model metric table: a metric
# filter matches a model with at least one point of that key comparing true, restricted to
# the request's datasets when it names some; `order_by` on a metric sorts by the model's
# latest point of that key (newest timestamp, then highest step, then lowest run id),
# models without one last. Here the points are the runs' metric history rows naming the
# model (`CandidateMetric.logged_model_eid`), reached through its partial index.


def source_run_id() -> sa.ColumnElement[Any]:
    """The source run id as MLflow shows it: its candidate's, else the unknown id kept as
    sent; for filtering and ordering a search."""
    candidate_eid = (
        sa.select(Candidate.eid)
        .where(Candidate.id == LoggedModel.source_candidate_id)
        .scalar_subquery()
    )
    return sa.func.coalesce(candidate_eid, LoggedModel.source_run_eid)


@dataclass(frozen=True)
class DatasetFilter:
    """A dataset whose metrics count: by name and by digest, each when given."""

    name: str | None = None
    digest: str | None = None


def _points_of_logged_model(
    key: str | None, datasets: Sequence[DatasetFilter]
) -> list[sa.ColumnElement[bool]]:
    """Conditions on `CandidateMetric` (joined to its `Candidate`) selecting the points of
    the enclosing query's `LoggedModel`, as `get_metrics_of` shows them."""
    conditions = [
        CandidateMetric.logged_model_eid == LoggedModel.eid,
        Candidate.id == CandidateMetric.candidate_id,
        # A run of another project naming this id does not speak for it.
        Candidate.project_id == LoggedModel.project_id,
        Candidate.state.in_(VISIBLE_STATES),
    ]
    if key is not None:
        conditions.append(CandidateMetric.name == key)
    # A dataset naming neither name nor digest restricts nothing.
    datasets = [dataset for dataset in datasets if dataset.name or dataset.digest]
    if datasets:
        conditions.append(
            sa.or_(
                *(
                    sa.and_(
                        *((CandidateMetric.dataset_name == dataset.name,) if dataset.name else ()),
                        *(
                            (CandidateMetric.dataset_digest == dataset.digest,)
                            if dataset.digest
                            else ()
                        ),
                    )
                    for dataset in datasets
                )
            )
        )
    return conditions


def metric_condition(
    key: str, op: str, value: float, *, datasets: Sequence[DatasetFilter] = ()
) -> sa.ColumnElement[bool]:
    """The logged model has a point of metric `key` (on one of `datasets`, if any) whose
    value compares true."""
    return (
        sa.exists()
        .where(
            *_points_of_logged_model(key, datasets),
            metric_value_condition(CandidateMetric.value, CandidateMetric.is_nan, op, value),
        )
        .correlate(LoggedModel)
    )


def measured_on_condition(datasets: Sequence[DatasetFilter]) -> sa.ColumnElement[bool]:
    """The logged model has a metric point on one of `datasets` (MLflow's meaning of a
    `datasets` clause without metric filters)."""
    return sa.exists().where(*_points_of_logged_model(None, datasets)).correlate(LoggedModel)


def key_value_condition(
    column: sa.SQLColumnExpression[dict[str, str]], key: str, op: str, value: Any
) -> sa.ColumnElement[bool]:
    """A param or tag (`LoggedModel.params`/`.tags`) comparison: the model has the key,
    with a matching value (MLflow's inner join: `!=` needs the key)."""
    try:
        validation.key(key)
    except InvalidValueError:
        # No logged model can hold a key its validation refuses.
        return sa.false()
    return string_condition(column[key].as_string(), op, value)


def metric_order(
    key: str, *, ascending: bool, dataset: DatasetFilter | None = None
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY clauses on `LoggedModel` by its latest point of metric `key` (on
    `dataset`, if given): numbers first, then NaN, then models without the metric."""
    latest = (
        sa.select()
        .select_from(CandidateMetric)
        .join(Candidate, Candidate.id == CandidateMetric.candidate_id)
        .where(*_points_of_logged_model(key, (dataset,) if dataset is not None else ()))
        .order_by(
            CandidateMetric.timestamp.desc(), CandidateMetric.step.desc(), Candidate.eid.asc()
        )
        .limit(1)
        .correlate(LoggedModel)
    )
    rank = latest.add_columns(sa.case((CandidateMetric.is_nan, 1), else_=0)).scalar_subquery()
    value = latest.add_columns(CandidateMetric.value).scalar_subquery()
    ordered = value.asc() if ascending else value.desc()
    return [sa.func.coalesce(rank, 2).asc(), sa.nulls_last(ordered)]
