"""Candidates: training runs of a model, and the params, metrics and metadata they log.

Every change asks the policy for its own operation on the candidate's project first, for
the `actor` given (`app.services.policy`): creating, changing and logging to a candidate
`LOG_RUN`, deleting, restoring and destroying it `DELETE_RUN`. A caller with no user (a
job, bootstrap) passes `OPERATOR`."""

from __future__ import annotations

import enum
import functools
import math
import re
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import events
from app.db import insert_for, insert_with_conflicts, rows_by_id, utcnow
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import (
    Candidate,
    CandidateInput,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateMetric,
    CandidateParam,
    CandidateStatus,
    Job,
    LifecycleState,
    Model,
    Project,
)
from app.search import grammar
from app.search.paging import Page
from app.search.runs import compile_run_filter, fetch_runs, run_condition
from app.search.sql import CodepointOrder
from app.services import (
    audit,
    candidate_keys,
    jobs,
    key_values,
    keyset,
    policy,
    validation,
    webhooks,
)
from app.services.actor import Actor
from app.services.keyset import KeysetPage, Sort, SortKey, Window
from app.services.policy import Operation
from app.services.projects import next_iid

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTRIES_PER_BATCH = 1000
# MLflow's bounds on get-history-bulk-interval: runs per call, values sampled per run.
MAX_SAMPLED_RUNS = 100
MAX_SAMPLED_POINTS = 2500
# A chart's bounds (GraphQL's metricHistories): values per series, series per candidate.
DEFAULT_CHART_POINTS = 1000
MAX_CHART_POINTS = 10_000
MAX_CHART_SERIES = 20
MAX_CHART_VALUES = 1_000_000  # what the charts of one request may hold at most

VISIBLE_STATES = (LifecycleState.ACTIVE, LifecycleState.DELETED)
# The run ids a candidate may keep when it moves in from another server (MLflow's are
# 32 hexadecimal digits).
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    timestamp: int
    step: int = 0
    # The MLflow logged model the value measures, and the dataset it was measured on.
    logged_model_eid: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None

    @property
    def order(self) -> tuple[int, int]:
        return (self.step, self.timestamp)

    @property
    def identity(self) -> tuple[str, int, int, float, bool]:
        """What makes two points the same point; every NaN is the same NaN."""
        is_nan = math.isnan(self.value)
        return (self.name, self.step, self.timestamp, 0.0 if is_nan else self.value, is_nan)


# Metric points one change event carries at most; a larger batch makes several events.
MAX_POINTS_PER_EVENT = 1000


@dataclass(frozen=True)
class CandidateChange:
    """What the subscribers of a candidate (`events.candidate_channel`) are told after a
    commit: its status and end time, and the metric points the change logged."""

    status: CandidateStatus
    end_time: int | None
    metrics: Sequence[MetricPoint] = ()

    def message(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "end_time": self.end_time,
            "metrics": [[p.name, p.value, p.step, p.timestamp] for p in self.metrics],
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> CandidateChange:
        points = [
            MetricPoint(name=name, value=value, step=step, timestamp=timestamp)
            for name, value, step, timestamp in message["metrics"]
        ]
        return cls(CandidateStatus(message["status"]), message["end_time"], points)


def _announce(
    session: AsyncSession, candidate: Candidate, metrics: Sequence[MetricPoint] = ()
) -> None:
    """Tell the candidate's subscribers about this change once it is committed."""
    channel = events.candidate_channel(candidate.id)
    for start in range(0, max(len(metrics), 1), MAX_POINTS_PER_EVENT):
        chunk = metrics[start : start + MAX_POINTS_PER_EVENT]
        change = CandidateChange(candidate.status, candidate.end_time, chunk)
        events.stage(session, channel, change.message())


async def current_change(session: AsyncSession, *, candidate: Candidate) -> CandidateChange:
    """A candidate's state as a change from nothing: its status, end time and the latest
    value of each of its metrics (the first message of a subscription)."""
    latest = await get_latest_metrics(session, candidate=candidate)
    return CandidateChange(candidate.status, candidate.end_time, latest[:MAX_POINTS_PER_EVENT])


def now_ms() -> int:
    return int(time.time() * 1000)


async def create_candidate(
    session: AsyncSession,
    *,
    model: Model,
    name: str | None = None,
    status: CandidateStatus = CandidateStatus.RUNNING,
    start_time: int | None = None,
    metadata: Mapping[str, str] | None = None,
    eid: str | None = None,
    actor: Actor | None,
) -> Candidate:
    """Start a candidate of a model (MLflow's create-run), once `actor` may (`LOG_RUN`);
    unnamed, it is `candidate-<iid>`. Its external id (the MLflow run id) is new, or
    `eid` when a run moves in from elsewhere and keeps its id (AlreadyExistsError if a
    candidate holds it)."""
    project = await session.get_one(Project, model.project_id)
    await policy.authorize(session, actor, project, Operation.LOG_RUN)
    if model.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(
            f"Model '{model.display_name}' is deleted; restore it to add candidates",
            field="model",
        )
    if name is not None and len(name) > validation.MAX_KEY_LENGTH:
        raise InvalidValueError(
            f"Candidate name is longer than {validation.MAX_KEY_LENGTH} characters", field="name"
        )
    if eid is not None:
        await _check_free_eid(session, eid)
    iid = await next_iid(session, project, "candidate")
    candidate = Candidate(
        project_id=model.project_id,
        model_id=model.id,
        iid=iid,
        eid=uuid.uuid4().hex if eid is None else eid,
        name=name or f"candidate-{iid}",
        status=status,
        start_time=now_ms() if start_time is None else start_time,
        user_id=actor.user_id if actor else None,
    )
    session.add(candidate)
    await session.flush()
    await audit.record(session, actor=actor, action="candidate.create", target=candidate)
    if metadata:
        await _log_batch(session, candidate=candidate, tags=metadata)
    return candidate


async def _check_free_eid(session: AsyncSession, eid: str) -> None:
    if not RUN_ID_PATTERN.fullmatch(eid):
        raise InvalidValueError(
            f"Run id '{eid}' is not 1 to 32 letters, digits, '_' or '-'", field="run_id"
        )
    if await session.scalar(sa.select(Candidate.id).where(Candidate.eid == eid)) is not None:
        raise AlreadyExistsError(f"A run with id '{eid}' already exists", field="run_id")


@functools.cache
def _candidate_lookup(by: Literal["eid", "iid"], include_deleted: bool) -> sa.Select[Any]:
    """Nearly every MLflow call of a training script looks its run up: built once per
    shape (see `app.db`). Whether a webhook watches metric thresholds comes with the
    row: logging a metric, the usual next step, then reads nothing more for webhooks
    when none does."""
    states = VISIBLE_STATES if include_deleted else (LifecycleState.ACTIVE,)
    column = Candidate.eid if by == "eid" else Candidate.iid
    return webhooks.with_crossing_hook(
        sa.select(Candidate).where(
            Candidate.project_id == sa.bindparam("project_id"),
            column == sa.bindparam("key"),
            Candidate.state.in_(states),
        )
    )


async def get_candidate(
    session: AsyncSession,
    *,
    project: Project,
    eid: str | None = None,
    iid: int | None = None,
    include_deleted: bool = False,
) -> Candidate:
    """A candidate of the project by its external id (MLflow run id) or iid."""
    key: str | int
    if eid is not None:
        by, key = "eid", eid
    elif iid is not None:
        by, key = "iid", iid
    else:
        raise InvalidValueError("a candidate is looked up by eid or iid")
    found = (
        await session.execute(
            _candidate_lookup(by, include_deleted), {"project_id": project.id, "key": key}
        )
    ).first()
    if found is None:
        raise NotFoundError(f"Candidate '{eid if eid is not None else iid}' does not exist")
    candidate: Candidate = found[0]
    webhooks.note_crossing_hooks(session, candidate.project_id, found[1] is not None)
    return candidate


async def list_candidates(
    session: AsyncSession,
    *,
    model: Model,
    states: Sequence[LifecycleState] = (LifecycleState.ACTIVE,),
    limit: int = 100,
    offset: int = 0,
) -> list[Candidate]:
    """Candidates of a model, newest first."""
    rows = await session.scalars(
        sa.select(Candidate)
        .where(Candidate.model_id == model.id, Candidate.state.in_(states))
        .order_by(Candidate.start_time.desc(), Candidate.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def update_candidate(
    session: AsyncSession,
    *,
    candidate: Candidate,
    name: str | None = None,
    status: CandidateStatus | None = None,
    end_time: int | None = None,
    actor: Actor | None,
) -> Candidate:
    """Rename a candidate or move it to another status (MLflow's update-run), once `actor`
    may (`LOG_RUN`); a new status or end time goes to the candidate's subscribers once
    committed."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.LOG_RUN)
    _require_active(candidate)
    if name is not None:
        if len(name) > validation.MAX_KEY_LENGTH:
            raise InvalidValueError(
                f"Candidate name is longer than {validation.MAX_KEY_LENGTH} characters",
                field="name",
            )
        candidate.name = name
    await webhooks.emit(session, *webhooks.candidate_ended(candidate, status, end_time))
    if status is not None:
        candidate.status = status
    if end_time is not None:
        candidate.end_time = end_time
    await session.flush()
    await audit.record(session, actor=actor, action="candidate.update", target=candidate)
    if status is not None or end_time is not None:
        _announce(session, candidate)
    return candidate


async def delete_candidate(
    session: AsyncSession, *, candidate: Candidate, actor: Actor | None
) -> Candidate:
    """Soft-delete (MLflow's delete-run), once `actor` may (`DELETE_RUN`); purged after
    the retention period."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.DELETE_RUN)
    candidate.state = LifecycleState.DELETED
    candidate.deleted_at = utcnow()
    await session.flush()
    await audit.record(session, actor=actor, action="candidate.delete", target=candidate)
    return candidate


async def restore_candidate(
    session: AsyncSession, *, candidate: Candidate, actor: Actor | None
) -> Candidate:
    """Restore a deleted candidate (MLflow's restore-run), once `actor` may
    (`DELETE_RUN`)."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.DELETE_RUN)
    if candidate.state is not LifecycleState.DELETED:
        raise InvalidValueError(f"Candidate '{candidate.eid}' is not deleted")
    candidate.state = LifecycleState.ACTIVE
    candidate.deleted_at = None
    await session.flush()
    await audit.record(session, actor=actor, action="candidate.restore", target=candidate)
    return candidate


async def destroy_candidate(
    session: AsyncSession, *, candidate: Candidate, actor: Actor | None
) -> Job:
    """Destroy a candidate for good, deleted or not, once `actor` may (`DELETE_RUN`): it
    vanishes from every read at once, and the returned `delete_candidate` job removes its
    metrics, params, metadata and package, with the package's artifacts. The candidate of
    a version is refused: a version owns exactly one candidate, so destroy the version
    (its candidate then stays as a plain candidate) or the whole model."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.DELETE_RUN)
    if candidate.state is LifecycleState.PENDING_DESTRUCTION:
        raise InvalidValueError(
            f"Candidate '{candidate.eid}' is already being destroyed", field="candidate"
        )
    if candidate.model_version_id is not None:
        raise InvalidValueError(
            f"Candidate '{candidate.eid}' is the candidate of a model version; destroy the "
            "version first",
            field="candidate",
        )
    candidate.state = LifecycleState.PENDING_DESTRUCTION
    await session.flush()
    job = await jobs.enqueue(
        session,
        kind=jobs.DELETE_CANDIDATE,
        payload={"candidate_id": candidate.id, "eid": candidate.eid},
        project_id=candidate.project_id,
    )
    await audit.record(
        session,
        actor=actor,
        action="candidate.destroy",
        target=candidate,
        details={"job_id": job.id},
    )
    return job


def _require_active(candidate: Candidate) -> None:
    if candidate.state is not LifecycleState.ACTIVE:
        raise InvalidValueError(
            f"The candidate '{candidate.eid}' must be active to be changed; it is "
            f"{candidate.state.value}",
            field="candidate",
        )


async def log_batch(
    session: AsyncSession,
    *,
    candidate: Candidate,
    metrics: Sequence[MetricPoint] = (),
    params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    tags: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    truncate_long_params: bool = False,
    actor: Actor | None,
) -> None:
    """Log metrics, params and metadata of a candidate, once `actor` may (`LOG_RUN`):
    validated whole first, then written with one statement per kind, and one for the
    names the model's candidates have logged (app/services/candidate_keys.py), so a bad
    entry writes nothing. A param value over 6,000 characters is refused, or stored as
    its first 6,000 with `truncate_long_params` (MLflow's server truncates by default).
    Once committed, the metric points go to the candidate's subscribers
    (`CandidateChange`)."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.LOG_RUN)
    await _log_batch(
        session,
        candidate=candidate,
        metrics=metrics,
        params=params,
        tags=tags,
        truncate_long_params=truncate_long_params,
    )


async def _log_batch(
    session: AsyncSession,
    *,
    candidate: Candidate,
    metrics: Sequence[MetricPoint] = (),
    params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    tags: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    truncate_long_params: bool = False,
) -> None:
    _require_active(candidate)
    param_pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    tag_pairs = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
    _check_batch_size(len(metrics), len(param_pairs), len(tag_pairs))
    for point in metrics:
        validation.key(point.name, kind="metric")
        validation.metric_value(point.name, point.value)
        _check_metric_link(point)
    new_params = _validated_params(param_pairs, truncate=truncate_long_params)
    new_tags = validation.metadata(dict(tag_pairs))
    await _write_params(session, candidate, new_params)
    await webhooks.emit_metric_crossings(session, candidate, metrics)
    await _write_metrics(session, candidate, metrics)
    await key_values.replace(session, CandidateMetadata, owner_id=candidate.id, items=new_tags)
    await candidate_keys.record(
        session,
        model_id=candidate.model_id,
        metrics=(point.name for point in metrics),
        params=new_params,
        tags=new_tags,
    )
    if metrics:
        _announce(session, candidate, metrics)


def _check_batch_size(metrics: int, params: int, tags: int) -> None:
    limits = (
        ("metrics", metrics, MAX_METRICS_PER_BATCH),
        ("params", params, MAX_PARAMS_PER_BATCH),
        ("tags", tags, MAX_TAGS_PER_BATCH),
    )
    for kind, count, limit in limits:
        if count > limit:
            raise InvalidValueError(
                f"A batch may hold at most {limit} {kind}; got {count}", field=kind
            )
    if metrics + params + tags > MAX_ENTRIES_PER_BATCH:
        raise InvalidValueError(
            f"A batch may hold at most {MAX_ENTRIES_PER_BATCH} entries in total; "
            f"got {metrics + params + tags}",
            field="batch",
        )


# The column sizes of MLflow's logged_model_metrics, where these strings live there.
_METRIC_LINK_LENGTHS = {"model_id": 64, "dataset_name": 500, "dataset_digest": 36}


def _check_metric_link(point: MetricPoint) -> None:
    link = {
        "model_id": point.logged_model_eid,
        "dataset_name": point.dataset_name,
        "dataset_digest": point.dataset_digest,
    }
    for field, value in link.items():
        if value is not None and len(value) > _METRIC_LINK_LENGTHS[field]:
            raise InvalidValueError(
                f"Metric '{point.name}' has a {field} longer than "
                f"{_METRIC_LINK_LENGTHS[field]} characters",
                field=f"metrics.{field}",
            )


def _validated_params(pairs: Sequence[tuple[str, str]], *, truncate: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, long_value in pairs:
        validation.key(name, kind="param")
        # Duplicates and earlier values are compared as stored, after truncation (as MLflow).
        value = validation.param_value(name, long_value, truncate=truncate)
        if params.get(name, value) != value:
            raise InvalidValueError(
                f"Duplicate parameter '{name}' submitted with different values", field="params"
            )
        params[name] = value
    return params


async def _write_params(
    session: AsyncSession, candidate: Candidate, params: dict[str, str]
) -> None:
    """Params are written once: the same value again is a no-op, a new one an error."""
    if not params:
        return
    existing = await session.execute(
        sa.select(CandidateParam.name, CandidateParam.value).where(
            CandidateParam.candidate_id == candidate.id, CandidateParam.name.in_(params)
        )
    )
    for name, old_value in existing:
        if old_value != params[name]:
            raise InvalidValueError(
                f"Changing param values is not allowed. Param with key='{name}' was already "
                f"logged with value='{old_value}' for candidate '{candidate.eid}'. "
                f"Attempted logging new value '{params[name]}'.",
                field="params",
            )
    await key_values.replace(
        session, CandidateParam, owner_id=candidate.id, items=params, overwrite=False
    )


async def _write_metrics(
    session: AsyncSession, candidate: Candidate, metrics: Sequence[MetricPoint]
) -> None:
    """Append to the history and move each latest value forward, one statement each. A
    point already stored is not stored again (MLflow's metric primary key); logged again
    for a logged model, it gains the link it lacked."""
    if not metrics:
        return
    unique_points: dict[tuple[str, int, int, float, bool], MetricPoint] = {}
    for point in metrics:
        known = unique_points.get(point.identity)
        if known is None or (known.logged_model_eid is None and point.logged_model_eid):
            unique_points[point.identity] = point
    history, latest_values = _metric_upserts(session.get_bind().dialect.name)
    await session.execute(
        history,
        [
            {
                "candidate_id": candidate.id,
                "name": name,
                "value": value,
                "is_nan": is_nan,
                "step": step,
                "timestamp": timestamp,
                "logged_model_eid": point.logged_model_eid,
                "dataset_name": point.dataset_name,
                "dataset_digest": point.dataset_digest,
            }
            for (name, step, timestamp, value, is_nan), point in unique_points.items()
        ],
    )
    latest: dict[str, MetricPoint] = {}
    for point in metrics:
        current = latest.get(point.name)
        if current is None or _is_later(point, current):
            latest[point.name] = point
    steps: dict[str, list[int]] = {}
    for name, step, *_ in unique_points:
        steps.setdefault(name, []).append(step)
    await session.execute(
        latest_values,
        [
            {
                "candidate_id": candidate.id,
                "model_id": candidate.model_id,
                "name": point.name,
                "value": None if math.isnan(point.value) else point.value,
                "is_nan": math.isnan(point.value),
                "step": point.step,
                "timestamp": point.timestamp,
                "first_step": min(steps[point.name]),
                "dense_steps": _are_dense(steps[point.name]),
            }
            for point in latest.values()
        ],
    )


@functools.cache
def _metric_upserts(dialect: str) -> tuple[sa.Insert, sa.Insert]:
    """The two statements of `_write_metrics` on `dialect`, built once (see `app.db`):
    append to the history, keeping a stored point but adding the logged model it lacked;
    move each latest value forward when the new point is later."""
    history = insert_for(dialect, CandidateMetric)
    stored = CandidateMetric.__table__.c
    history_upsert = history.on_conflict_do_update(
        index_elements=["candidate_id", "name", "step", "timestamp", "value", "is_nan"],
        set_={
            "logged_model_eid": history.excluded.logged_model_eid,
            "dataset_name": history.excluded.dataset_name,
            "dataset_digest": history.excluded.dataset_digest,
        },
        where=sa.and_(
            stored.logged_model_eid.is_(None), history.excluded.logged_model_eid.is_not(None)
        ),
    )
    statement = insert_for(dialect, CandidateLatestMetric)
    table = CandidateLatestMetric.__table__.c
    excluded = statement.excluded
    # The same order as _is_later; a NaN value compares as unknown, so it never wins a tie.
    is_later = sa.tuple_(excluded.step, excluded.timestamp, excluded.value) > sa.tuple_(
        table.step, table.timestamp, table.value
    )
    latest_upsert = statement.on_conflict_do_update(
        index_elements=["candidate_id", "name"],
        set_={
            **{
                column: sa.case((is_later, excluded[column]), else_=table[column])
                for column in ("value", "is_nan", "step", "timestamp")
            },
            "first_step": sa.case(
                (excluded.first_step < table.first_step, excluded.first_step),
                else_=table.first_step,
            ),
            # Still dense only when this batch is, and starts right after the last step.
            # (CASE keeps `first_step - 1` from being computed at the lowest step.)
            "dense_steps": sa.and_(
                table.dense_steps,
                excluded.dense_steps,
                sa.case(
                    (excluded.first_step > table.step, excluded.first_step - 1 == table.step),
                    else_=sa.false(),
                ),
            ),
        },
    )
    return history_upsert, latest_upsert


def _are_dense(steps: list[int]) -> bool:
    """Whether `steps` hold each step from the lowest to the highest exactly once."""
    return len(set(steps)) == len(steps) == max(steps) - min(steps) + 1


def _is_later(point: MetricPoint, current: MetricPoint) -> bool:
    if point.order != current.order:
        return point.order > current.order
    return (
        not math.isnan(point.value)
        and not math.isnan(current.value)
        and (point.value > current.value)
    )


async def get_params(session: AsyncSession, *, candidate: Candidate) -> dict[str, str]:
    return await key_values.read(session, CandidateParam, owner_id=candidate.id)


async def get_metadata(session: AsyncSession, *, candidate: Candidate) -> dict[str, str]:
    return await key_values.read(session, CandidateMetadata, owner_id=candidate.id)


async def delete_metadata(
    session: AsyncSession, *, candidate: Candidate, name: str, actor: Actor | None
) -> None:
    """Delete one metadata entry (MLflow's delete-tag), once `actor` may (`LOG_RUN`)."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.LOG_RUN)
    _require_active(candidate)
    if not await key_values.delete(session, CandidateMetadata, owner_id=candidate.id, name=name):
        raise NotFoundError(f"No tag with name: {name} in candidate {candidate.eid}", field="name")


def _point(value: float | None, is_nan: bool, name: str, step: int, timestamp: int) -> MetricPoint:
    return MetricPoint(
        name=name,
        value=math.nan if is_nan or value is None else value,
        step=step,
        timestamp=timestamp,
    )


async def get_latest_metrics_of(
    session: AsyncSession, *, candidate_ids: list[int]
) -> dict[int, list[MetricPoint]]:
    """The latest value of every metric of many candidates, in one query."""
    found: dict[int, list[MetricPoint]] = {candidate_id: [] for candidate_id in candidate_ids}
    if not candidate_ids:
        return found
    rows = await session.execute(_LATEST_METRICS_OF, {"ids": candidate_ids})
    for candidate_id, value, is_nan, name, step, timestamp in rows:
        found[candidate_id].append(_point(value, is_nan, name, step, timestamp))
    return found


def _grouped_by_names(
    asked: Collection[tuple[int, tuple[str, ...]]],
) -> dict[tuple[str, ...], list[int]]:
    """The candidate ids asking for each distinct set of names: one statement per set."""
    grouped: dict[tuple[str, ...], list[int]] = {}
    for candidate_id, names in asked:
        grouped.setdefault(names, []).append(candidate_id)
    return grouped


async def latest_metrics_named(
    session: AsyncSession, *, asked: Collection[tuple[int, tuple[str, ...]]]
) -> dict[tuple[int, tuple[str, ...]], list[MetricPoint]]:
    """The latest value of each (candidate id, names) among those names, by name: one
    statement per distinct set of names, whatever the number of candidates asking."""
    found: dict[tuple[int, tuple[str, ...]], list[MetricPoint]] = {pair: [] for pair in asked}
    for names, candidate_ids in _grouped_by_names(asked).items():
        if not names:
            continue
        rows = await session.execute(
            _LATEST_METRICS_NAMED, {"ids": candidate_ids, "names": list(names)}
        )
        for candidate_id, value, is_nan, name, step, timestamp in rows:
            found[candidate_id, names].append(_point(value, is_nan, name, step, timestamp))
    return found


async def get_latest_metrics(session: AsyncSession, *, candidate: Candidate) -> list[MetricPoint]:
    rows = await session.execute(
        sa.select(
            CandidateLatestMetric.value,
            CandidateLatestMetric.is_nan,
            CandidateLatestMetric.name,
            CandidateLatestMetric.step,
            CandidateLatestMetric.timestamp,
        )
        .where(CandidateLatestMetric.candidate_id == candidate.id)
        .order_by(CandidateLatestMetric.name)
    )
    return [_point(*row) for row in rows]


async def get_metric_history(
    session: AsyncSession,
    *,
    candidate: Candidate,
    name: str,
    start_step: int | None = None,
    end_step: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[MetricPoint]:
    """Values logged for a metric, by step then timestamp; optionally the steps from
    `start_step` to `end_step` only, and a page of them."""
    query = sa.select(CandidateMetric).where(
        CandidateMetric.candidate_id == candidate.id, CandidateMetric.name == name
    )
    if start_step is not None:
        query = query.where(CandidateMetric.step >= start_step)
    if end_step is not None:
        query = query.where(CandidateMetric.step <= end_step)
    query = query.order_by(CandidateMetric.step, CandidateMetric.timestamp, CandidateMetric.id)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return [metric_point(row) for row in rows]


async def sample_metric_history(
    session: AsyncSession,
    *,
    project: Project,
    eids: Sequence[str],
    name: str,
    max_points: int = MAX_SAMPLED_POINTS,
    start_step: int | None = None,
    end_step: int | None = None,
) -> list[tuple[str, list[MetricPoint]]]:
    """A metric's history for each of up to 100 runs, thinned for a chart (MLflow's
    get-history-bulk-interval), as (run id, points) in the order the runs were named;
    a run named twice is answered once. A run's values from `start_step` to `end_step`
    (both given or neither), in (step, timestamp) order, are cut down in the database to
    `max_points` evenly spaced ones that keep the first and the last; with `max_points`
    1, the last alone. The database reads the range by index and returns only the kept
    values, so an answer holds at most 100 x 2,500 points whatever the runs logged."""
    if len(eids) > MAX_SAMPLED_RUNS:
        raise InvalidValueError(
            f"At most {MAX_SAMPLED_RUNS} run ids are sampled at once; {len(eids)} were given",
            field="run_ids",
        )
    if not 1 <= max_points <= MAX_SAMPLED_POINTS:
        raise InvalidValueError(
            f"max_results must be between 1 and {MAX_SAMPLED_POINTS}", field="max_results"
        )
    if (start_step is None) != (end_step is None):
        raise InvalidValueError(
            "If either start step or end step are specified, both must be specified.",
            field="start_step",
        )
    if start_step is not None and end_step is not None and start_step > end_step:
        raise InvalidValueError(
            "end_step must be greater than start_step. "
            f"Found start_step={start_step} and end_step={end_step}.",
            field="end_step",
        )
    distinct = list(dict.fromkeys(eids))
    found = {
        row.eid: row
        for row in await session.scalars(
            sa.select(Candidate).where(
                Candidate.project_id == project.id,
                Candidate.eid.in_(distinct),
                Candidate.state.in_(VISIBLE_STATES),
            )
        )
    }
    for eid in distinct:
        if eid not in found:
            raise NotFoundError(f"Run '{eid}' not found", field="run_id")
    sampled = await sample_histories(
        session,
        candidate_ids=[found[eid].id for eid in distinct],
        names=[name],
        max_points=max_points,
        min_step=start_step,
        max_step=end_step,
    )
    return [(eid, sampled[found[eid].id, name]) for eid in distinct]


async def sample_histories(
    session: AsyncSession,
    *,
    candidate_ids: Collection[int],
    names: Collection[str],
    max_points: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> dict[tuple[int, str], list[MetricPoint]]:
    """The histories of `names` for each candidate, by (candidate id, name), each cut down
    as MLflow's get-history-bulk-interval cuts one (see `sample_metric_history`), from
    `min_step` and up to `max_step` where given, in one statement whatever the number of
    candidates and names. A candidate that never logged a name gets an empty list.

    Two ways to the same points, chosen per series from its latest-value row. A series
    whose steps are dense (each step from its first to its last holds one point, as a
    training loop logs them) has its n-th point in range at step `low + n`: the kept
    positions are computed, and only those rows are read, by index seeks, whatever the
    length of the series. Any other series is numbered in (step, timestamp, value) order
    and cut by position, which reads every point in range."""
    points: dict[tuple[int, str], list[MetricPoint]] = {
        (candidate_id, name): [] for candidate_id in candidate_ids for name in names
    }
    if not points:
        return points
    summary = CandidateLatestMetric
    asked = (summary.candidate_id.in_(list(candidate_ids)), summary.name.in_(list(names)))
    low: sa.SQLColumnExpression[int | None] = summary.first_step
    high: sa.SQLColumnExpression[int | None] = summary.step
    if min_step is not None:
        low = sa.case((summary.first_step < min_step, min_step), else_=summary.first_step)
    if max_step is not None:
        high = sa.case((summary.step > max_step, max_step), else_=summary.step)
    by_step = (
        sa.select(
            summary.candidate_id,
            summary.name,
            low.label("low"),
            (high - low + 1).label("count"),
        )
        .where(*asked, summary.dense_steps, high >= low)
        .cte("by_step")
    )
    # The indexes 0 .. max_points - 1 of the kept points.
    picks = sa.select(sa.literal(0, sa.BigInteger).label("pick")).cte("picks", recursive=True)
    picks = picks.union_all(sa.select(picks.c.pick + 1).where(picks.c.pick < max_points - 1))
    position = _kept_position(picks.c.pick, by_step.c.count, max_points)
    # The kept steps first, then each row by its step: the database seeks them one by one.
    kept_steps = (
        sa.select(
            by_step.c.candidate_id,
            by_step.c.name,
            (by_step.c.low + position).label("step"),
            position.label("position"),
        )
        .join(picks, picks.c.pick < by_step.c.count)
        .cte("kept_steps")
        .prefix_with("MATERIALIZED")
    )
    read_by_step = sa.select(
        CandidateMetric.candidate_id,
        CandidateMetric.name,
        CandidateMetric.value,
        CandidateMetric.is_nan,
        CandidateMetric.step,
        CandidateMetric.timestamp,
        kept_steps.c.position,
    ).join(
        kept_steps,
        sa.and_(
            CandidateMetric.candidate_id == kept_steps.c.candidate_id,
            CandidateMetric.name == kept_steps.c.name,
            CandidateMetric.step == kept_steps.c.step,
        ),
    )
    by_numbering = (
        sa.select(summary.candidate_id, summary.name)
        .where(*asked, sa.not_(summary.dense_steps))
        .cte("by_numbering")
        .prefix_with("MATERIALIZED")
    )
    in_range: list[sa.ColumnElement[bool]] = [
        # Each column apart lets the database seek the index (as for a list of values);
        # the pair drops a dense series that the two lists together would name.
        CandidateMetric.candidate_id.in_(sa.select(by_numbering.c.candidate_id)),
        CandidateMetric.name.in_(sa.select(by_numbering.c.name)),
        sa.tuple_(CandidateMetric.candidate_id, CandidateMetric.name).in_(
            sa.select(by_numbering.c.candidate_id, by_numbering.c.name)
        ),
    ]
    if min_step is not None:
        in_range.append(CandidateMetric.step >= min_step)
    if max_step is not None:
        in_range.append(CandidateMetric.step <= max_step)
    series = (CandidateMetric.candidate_id, CandidateMetric.name)
    # Counted apart from the numbering: a COUNT window would hold each series' whole range.
    counts = (
        sa.select(*series, sa.func.count().label("count"))
        .where(*in_range)
        .group_by(*series)
        .subquery()
    )
    numbered = (
        sa.select(
            *series,
            CandidateMetric.value,
            CandidateMetric.is_nan,
            CandidateMetric.step,
            CandidateMetric.timestamp,
            (
                # MLflow's order, and the unique index's: the database walks it, unsorted.
                sa.func.row_number().over(
                    partition_by=series,
                    order_by=(
                        CandidateMetric.step,
                        CandidateMetric.timestamp,
                        CandidateMetric.value,
                        CandidateMetric.is_nan,
                    ),
                )
                - 1
            ).label("position"),
        )
        .where(*in_range)
        .subquery()
    )
    read_by_numbering = (
        sa.select(
            numbered.c.candidate_id,
            numbered.c.name,
            numbered.c.value,
            numbered.c.is_nan,
            numbered.c.step,
            numbered.c.timestamp,
            numbered.c.position,
        )
        .join(
            counts,
            sa.and_(
                counts.c.candidate_id == numbered.c.candidate_id,
                counts.c.name == numbered.c.name,
            ),
        )
        .where(_evenly_spaced(numbered.c.position, counts.c.count, max_points))
    )
    kept = sa.union_all(read_by_step, read_by_numbering).subquery()
    rows = await session.execute(
        sa.select(
            kept.c.candidate_id,
            kept.c.name,
            kept.c.value,
            kept.c.is_nan,
            kept.c.step,
            kept.c.timestamp,
        ).order_by(kept.c.candidate_id, kept.c.name, kept.c.position)
    )
    for candidate_id, name, value, is_nan, step, timestamp in rows:
        points[candidate_id, name].append(_point(value, is_nan, name, step, timestamp))
    return points


@dataclass(frozen=True)
class ChartRequest:
    """Which series of a candidate a chart asks for (GraphQL's metricHistories): up to
    20 distinct metric names, each cut down to `max_points` (1 to 10,000) as
    `sample_histories` does, within [min_step, max_step] where given."""

    names: tuple[str, ...]
    max_points: int = DEFAULT_CHART_POINTS
    min_step: int | None = None
    max_step: int | None = None

    @classmethod
    def checked(
        cls,
        *,
        names: Sequence[str],
        max_points: int = DEFAULT_CHART_POINTS,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> ChartRequest:
        distinct = tuple(dict.fromkeys(names))
        if len(distinct) > MAX_CHART_SERIES:
            raise InvalidValueError(
                f"A chart reads at most {MAX_CHART_SERIES} metrics at once; "
                f"{len(distinct)} were given",
                field="names",
            )
        if not 1 <= max_points <= MAX_CHART_POINTS:
            raise InvalidValueError(
                f"maxPoints must be between 1 and {MAX_CHART_POINTS}; got {max_points}",
                field="maxPoints",
            )
        if min_step is not None and max_step is not None and min_step > max_step:
            raise InvalidValueError(
                f"minStep ({min_step}) is greater than maxStep ({max_step})", field="minStep"
            )
        return cls(distinct, max_points, min_step, max_step)


async def chart_series(
    session: AsyncSession, *, asked: Collection[tuple[int, ChartRequest]]
) -> dict[tuple[int, ChartRequest], list[list[MetricPoint]]]:
    """The series each (candidate id, request) asks for, in the order of its names: one
    statement per distinct request, whatever the number of candidates asking it. Asked
    together, they may hold at most 1,000,000 values (e.g. 10 candidates x 20 series x
    5,000 values); more is refused before anything is read."""
    by_request: dict[ChartRequest, list[int]] = {}
    for candidate_id, request in asked:
        by_request.setdefault(request, []).append(candidate_id)
    at_most = sum(
        len(ids) * len(request.names) * request.max_points for request, ids in by_request.items()
    )
    if at_most > MAX_CHART_VALUES:
        raise InvalidValueError(
            f"Charts asked together may hold at most {MAX_CHART_VALUES:,} values; these "
            f"could hold {at_most:,}: ask fewer candidates, metrics or points",
            field="maxPoints",
        )
    found: dict[tuple[int, ChartRequest], list[list[MetricPoint]]] = {}
    for request, candidate_ids in by_request.items():
        sampled = await sample_histories(
            session,
            candidate_ids=candidate_ids,
            names=request.names,
            max_points=request.max_points,
            min_step=request.min_step,
            max_step=request.max_step,
        )
        for candidate_id in candidate_ids:
            found[candidate_id, request] = [sampled[candidate_id, n] for n in request.names]
    return found


def _kept_position(
    pick: sa.ColumnElement[int], count: sa.ColumnElement[int], wanted: int
) -> sa.ColumnElement[int]:
    """The position (from 0) of the `pick`-th kept row of `count`, for the rows that
    `_evenly_spaced` keeps: every row when `count <= wanted`, else the last alone when
    `wanted` is 1, else ceil(pick * (count - 1) / (wanted - 1))."""
    if wanted == 1:
        return count - 1
    gaps = wanted - 1
    return sa.case(
        (count <= wanted, pick),
        else_=(pick * (count - 1) + (gaps - 1)) // gaps,
    )


def _evenly_spaced(
    position: sa.ColumnElement[int], count: sa.ColumnElement[int], wanted: int
) -> sa.ColumnElement[bool]:
    """Whether the row at `position` (from 0) of `count` is one of `wanted` evenly spaced
    rows: those at ceil(i * (count - 1) / (wanted - 1)) for i = 0 .. wanted - 1, which are
    the rows where floor(position * (wanted - 1) / (count - 1)) steps up."""
    if wanted == 1:
        return position == count - 1
    gaps = wanted - 1
    # NULLIF: a run with one value divides by nothing (it is kept by `count <= wanted`).
    span = sa.func.nullif(count - 1, 0, type_=sa.BigInteger)
    return sa.or_(
        count <= wanted,
        position == 0,
        (position * gaps) // span > ((position - 1) * gaps) // span,
    )


async def record_inputs(
    session: AsyncSession,
    *,
    candidate: Candidate,
    entries: Sequence[tuple[str, str, dict[str, Any]]],
    actor: Actor | None,
) -> None:
    """Record (kind, key, description) of datasets and models a candidate used or made,
    once `actor` may (`LOG_RUN`); an entry already recorded under the same kind and key is
    kept as it is."""
    await policy.authorize_in(session, actor, candidate.project_id, Operation.LOG_RUN)
    _require_active(candidate)
    if not entries:
        return
    statement = insert_with_conflicts(session, CandidateInput)
    await session.execute(
        statement.on_conflict_do_nothing(index_elements=["candidate_id", "kind", "key"]),
        [
            {"candidate_id": candidate.id, "kind": kind, "key": key[:512], "payload": payload}
            for kind, key, payload in entries
        ],
    )


async def get_inputs_of(
    session: AsyncSession, *, candidate_ids: list[int], kind: str | None = None
) -> dict[int, list[CandidateInput]]:
    """The inputs and outputs each candidate recorded (those of one `kind` if given), in
    the order they were recorded."""
    found: dict[int, list[CandidateInput]] = {candidate_id: [] for candidate_id in candidate_ids}
    if not candidate_ids:
        return found
    query = _INPUTS_OF if kind is None else _INPUTS_OF.where(CandidateInput.kind == kind)
    rows = await session.scalars(query, {"ids": candidate_ids})
    for row in rows:
        found[row.candidate_id].append(row)
    return found


# --- Reading many at once (GraphQL's loaders) ---------------------------------------------


async def get_candidates(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Candidate]:
    """Candidates by id, deleted ones included (they can be restored)."""
    return await rows_by_id(session, Candidate, ids, Candidate.state.in_(VISIBLE_STATES))


async def candidates_of_versions(
    session: AsyncSession, *, version_ids: Collection[int]
) -> dict[int, Candidate]:
    """The candidate of each version, by version id."""
    if not version_ids:
        return {}
    rows = await session.scalars(
        sa.select(Candidate).where(Candidate.model_version_id.in_(version_ids))
    )
    return {row.model_version_id: row for row in rows if row.model_version_id is not None}


async def count_candidates(session: AsyncSession, *, model_ids: Collection[int]) -> dict[int, int]:
    """How many active candidates each model has."""
    counts = dict.fromkeys(model_ids, 0)
    if model_ids:
        rows = await session.execute(
            sa.select(Candidate.model_id, sa.func.count())
            .where(Candidate.model_id.in_(model_ids), Candidate.state == LifecycleState.ACTIVE)
            .group_by(Candidate.model_id)
        )
        counts.update((owner, int(total)) for owner, total in rows)
    return counts


async def model_iids(session: AsyncSession, *, model_ids: Collection[int]) -> dict[int, int]:
    """The iid (MLflow's experiment id) of each model candidates belong to, deleted
    models included."""
    if not model_ids:
        return {}
    rows = await session.execute(_MODEL_IIDS, {"ids": list(model_ids)})
    return {model_id: iid for model_id, iid in rows}


# Statements of every run an MLflow call answers with (`app.mlflow.runs.render`),
# built once (see `app.db`).
_MODEL_IIDS = sa.select(Model.id, Model.iid).where(
    Model.id.in_(sa.bindparam("ids", expanding=True))
)
_LATEST_METRICS_OF = (
    sa.select(
        CandidateLatestMetric.candidate_id,
        CandidateLatestMetric.value,
        CandidateLatestMetric.is_nan,
        CandidateLatestMetric.name,
        CandidateLatestMetric.step,
        CandidateLatestMetric.timestamp,
    )
    .where(CandidateLatestMetric.candidate_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(CandidateLatestMetric.candidate_id, CandidateLatestMetric.name)
)
_LATEST_METRICS_NAMED = _LATEST_METRICS_OF.where(
    CandidateLatestMetric.name.in_(sa.bindparam("names", expanding=True))
)
_INPUTS_OF = (
    sa.select(CandidateInput)
    .where(CandidateInput.candidate_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(CandidateInput.id)
)


async def eids_of(session: AsyncSession, *, candidate_ids: Collection[int]) -> dict[int, str]:
    """The external id (MLflow run id) of each candidate, whatever its state."""
    if not candidate_ids:
        return {}
    rows = await session.execute(
        sa.select(Candidate.id, Candidate.eid).where(Candidate.id.in_(candidate_ids))
    )
    return {candidate_id: eid for candidate_id, eid in rows}


async def params_of(
    session: AsyncSession, *, candidate_ids: list[int]
) -> dict[int, dict[str, str]]:
    return await key_values.read_many(session, CandidateParam, owner_ids=candidate_ids)


async def metadata_of(
    session: AsyncSession, *, candidate_ids: list[int]
) -> dict[int, dict[str, str]]:
    return await key_values.read_many(session, CandidateMetadata, owner_ids=candidate_ids)


async def entries_named(
    session: AsyncSession,
    table: type[CandidateParam] | type[CandidateMetadata],
    *,
    asked: Collection[tuple[int, tuple[str, ...]]],
) -> dict[tuple[int, tuple[str, ...]], dict[str, str]]:
    """The params (or metadata) of each (candidate id, names) among those names, by name:
    one statement per distinct set of names, whatever the number of candidates asking."""
    found: dict[tuple[int, tuple[str, ...]], dict[str, str]] = {pair: {} for pair in asked}
    for names, candidate_ids in _grouped_by_names(asked).items():
        if not names:
            continue
        rows = await session.execute(
            sa.select(table.candidate_id, table.name, table.value)
            .where(table.candidate_id.in_(candidate_ids), table.name.in_(names))
            .order_by(table.candidate_id, table.name)
        )
        for candidate_id, name, value in rows:
            found[candidate_id, names][name] = value
    return found


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a candidate used, as MLflow's log_inputs described it: its name, digest,
    source (type and location), schema and profile (JSON text, where logged), and the
    input's tags, among them `mlflow.data.context` ("training", "evaluation" ...)."""

    name: str
    digest: str | None
    source_type: str | None
    source: str | None
    schema: str | None
    profile: str | None
    tags: dict[str, str]

    @property
    def context(self) -> str | None:
        return self.tags.get(DATASET_CONTEXT_TAG)

    @classmethod
    def from_row(cls, row: CandidateInput) -> DatasetInput:
        dataset = row.payload.get("dataset") or {}
        tags = row.payload.get("tags") or []

        def text(name: str) -> str | None:
            value = dataset.get(name)
            return None if value is None else str(value)

        return cls(
            name=str(dataset.get("name", "")),
            digest=text("digest"),
            source_type=text("source_type"),
            source=text("source"),
            schema=text("schema"),
            profile=text("profile"),
            tags={str(tag["key"]): str(tag.get("value", "")) for tag in tags},
        )


DATASET_CONTEXT_TAG = "mlflow.data.context"
PARENT_RUN_TAG = "mlflow.parentRunId"
# A candidate's children are listed up to this many at once (GraphQL's `children`).
DEFAULT_CHILDREN = 100
MAX_CHILDREN = 1000


async def dataset_inputs_of(
    session: AsyncSession, *, candidate_ids: list[int]
) -> dict[int, list[DatasetInput]]:
    """The datasets each candidate used, in the order they were logged."""
    rows = await get_inputs_of(session, candidate_ids=candidate_ids, kind="dataset_input")
    return {owner: [DatasetInput.from_row(row) for row in found] for owner, found in rows.items()}


async def parents_of(
    session: AsyncSession, *, candidate_ids: Collection[int]
) -> dict[int, Candidate]:
    """The parent of each candidate that has one (MLflow's nested runs: the run named by
    its `mlflow.parentRunId` tag), in the same project, deleted parents included."""
    if not candidate_ids:
        return {}
    child = aliased(Candidate)
    rows = await session.execute(
        sa.select(CandidateMetadata.candidate_id, Candidate)
        .select_from(CandidateMetadata)
        .join(child, child.id == CandidateMetadata.candidate_id)
        .join(
            Candidate,
            sa.and_(
                Candidate.eid == CandidateMetadata.value,
                Candidate.project_id == child.project_id,
                Candidate.state.in_(VISIBLE_STATES),
            ),
        )
        .where(
            CandidateMetadata.candidate_id.in_(candidate_ids),
            CandidateMetadata.name == PARENT_RUN_TAG,
        )
    )
    return {candidate_id: parent for candidate_id, parent in rows}


# The partial index of parent run ids (ix_candidate_metadata_parent_run) is used only by
# a query holding its expression and condition with these constants written in, not bound.
def _names_parent_run(name: sa.SQLColumnExpression[str]) -> sa.ColumnElement[bool]:
    return name == sa.literal(PARENT_RUN_TAG, literal_execute=True)


def _parent_run_key(value: sa.SQLColumnExpression[str]) -> sa.ColumnElement[str]:
    return sa.func.substr(
        value, sa.literal(1, literal_execute=True), sa.literal(32, literal_execute=True)
    )


def children_limit(first: int) -> int:
    """How many children a list asks for: 0 to MAX_CHILDREN."""
    if not 0 <= first <= MAX_CHILDREN:
        raise InvalidValueError(
            f"`first` must be between 0 and {MAX_CHILDREN}, not {first}", field="first"
        )
    return first


async def children_of(
    session: AsyncSession, *, asked: Collection[tuple[int, int]]
) -> dict[tuple[int, int], list[Candidate]]:
    """The active children of each (candidate id, limit): the first `limit` candidates of
    the same project whose `mlflow.parentRunId` tag names it, by start time then iid. One
    statement per distinct limit, whatever the number of parents."""
    by_limit: dict[int, list[int]] = {}
    for candidate_id, limit in asked:
        by_limit.setdefault(limit, []).append(candidate_id)
    found: dict[tuple[int, int], list[Candidate]] = {pair: [] for pair in asked}
    parent = aliased(Candidate)
    for limit, parent_ids in by_limit.items():
        if limit == 0:
            continue
        numbered = (
            sa.select(
                parent.id.label("parent_id"),
                Candidate.id.label("child_id"),
                sa.func.row_number()
                .over(partition_by=parent.id, order_by=(Candidate.start_time, Candidate.iid))
                .label("position"),
            )
            .select_from(parent)
            .join(
                CandidateMetadata,
                sa.and_(
                    _names_parent_run(CandidateMetadata.name),
                    _parent_run_key(CandidateMetadata.value) == parent.eid,
                    CandidateMetadata.value == parent.eid,
                ),
            )
            .join(
                Candidate,
                sa.and_(
                    Candidate.id == CandidateMetadata.candidate_id,
                    Candidate.project_id == parent.project_id,
                ),
            )
            .where(parent.id.in_(parent_ids), Candidate.state == LifecycleState.ACTIVE)
            .subquery()
        )
        rows = await session.execute(
            sa.select(numbered.c.parent_id, Candidate)
            .join(Candidate, Candidate.id == numbered.c.child_id)
            .where(numbered.c.position <= limit)
            .order_by(numbered.c.parent_id, numbered.c.position)
        )
        for parent_id, row in rows:
            found[parent_id, limit].append(row)
    return found


# --- Searching: GraphQL's filtered pages, MLflow's search_runs -------------------------------


class CandidateSort(enum.Enum):
    CREATED_AT = "created_at"  # the start time, as START_TIME (the first name it had)
    START_TIME = "start_time"
    END_TIME = "end_time"
    STATUS = "status"
    DURATION = "duration"  # end time minus start time: unknown while running
    NAME = "name"
    METRIC = "metric"
    PARAM = "param"
    TAG = "tag"


# The sorts that order by one named metric, param or tag, given in `key`.
_KEYED_SORTS = (CandidateSort.METRIC, CandidateSort.PARAM, CandidateSort.TAG)


class CandidateLifecycle(enum.Enum):
    """Which candidates a search sees: active ones, deleted ones (MLflow's soft-deleted
    runs, restorable until purged), or both."""

    ACTIVE = "active"
    DELETED = "deleted"
    ALL = "all"

    @property
    def states(self) -> tuple[LifecycleState, ...]:
        if self is CandidateLifecycle.ALL:
            return VISIBLE_STATES
        return (LifecycleState(self.value),)


@dataclass(frozen=True)
class CandidateQuery:
    """Conditions a candidate must all meet: comparisons of its latest metrics, params,
    tags and attributes; MLflow's search_runs filter (`query`); a part of its name, in
    any case; whether it was promoted into a version; where it is in its lifecycle
    (active ones unless asked otherwise)."""

    comparisons: Sequence[grammar.Comparison] = ()
    query: str | None = None
    name_contains: str | None = None
    has_version: bool | None = None
    lifecycle: CandidateLifecycle = CandidateLifecycle.ACTIVE

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        found = [run_condition(comparison) for comparison in self.comparisons]
        try:
            found += compile_run_filter(self.query)
        except InvalidValueError as error:
            raise InvalidValueError(error.message, field="filter.query") from None
        if self.name_contains is not None:
            found.append(Candidate.name.icontains(self.name_contains, autoescape=True))
        if self.has_version is True:
            found.append(Candidate.model_version_id.is_not(None))
        elif self.has_version is False:
            found.append(Candidate.model_version_id.is_(None))
        found.append(Candidate.state.in_(self.lifecycle.states))
        return found


async def search(
    session: AsyncSession,
    *,
    model: Model,
    filter: CandidateQuery,
    sort: CandidateSort = CandidateSort.CREATED_AT,
    key: str | None = None,
    ascending: bool = False,
    window: Window,
) -> KeysetPage[Candidate]:
    """The page `window` asks for of a model's candidates meeting `filter`, in the order
    of `sort` (see `sorted_candidates`), with their total when the window asks. A bad
    filter is refused on `filter.query`, a missing sort key on `key`."""
    query, order = sorted_candidates(
        Candidate.model_id == model.id,
        conditions=filter.conditions(),
        sort=sort,
        key=key,
        ascending=ascending,
    )
    return await keyset.read(session, query, order, window)


async def search_project(
    session: AsyncSession,
    *,
    project: Project,
    model_names: Collection[str] | None = None,
    filter: CandidateQuery,
    sort: CandidateSort = CandidateSort.CREATED_AT,
    key: str | None = None,
    ascending: bool = False,
    window: Window,
) -> KeysetPage[Candidate]:
    """`search` across the project's active models, or those of them named in
    `model_names` (MLflow's search_runs over several experiments): one list, one order."""
    models = sa.select(Model.id).where(
        Model.project_id == project.id, Model.state == LifecycleState.ACTIVE
    )
    if model_names is not None:
        models = models.where(Model.name.in_(validation.names(model_names, field="models")))
    query, order = sorted_candidates(
        Candidate.model_id.in_(models.scalar_subquery()),
        conditions=filter.conditions(),
        sort=sort,
        key=key,
        ascending=ascending,
    )
    return await keyset.read(session, query, order, window)


def sorted_candidates(
    scope: sa.ColumnElement[bool],
    *,
    conditions: Sequence[sa.ColumnElement[bool]],
    sort: CandidateSort,
    key: str | None,
    ascending: bool,
) -> tuple[sa.Select[Any], Sort]:
    """The candidates in `scope` (of a model, of models) meeting `conditions`, and their
    order. Metrics sort numbers (infinities included) first, then NaN, then candidates
    without the metric, in both directions; params, tags, names and statuses sort by code
    point; a missing value (no such param or tag, no end time or duration while running)
    sorts last in both directions; ties go by iid. The metric, param or tag is joined, so
    PostgreSQL can use its indexes."""
    query = sa.select(Candidate).where(scope, *conditions)
    tie = SortKey(Candidate.iid)
    keys: list[SortKey]
    if sort in _KEYED_SORTS and not key:
        raise InvalidValueError(
            f"Ordering by a {sort.value} needs the {sort.value}'s name in `key`", field="key"
        )
    if sort is CandidateSort.METRIC:
        metric = aliased(CandidateLatestMetric)
        query = query.outerjoin(
            metric,
            sa.and_(
                metric.candidate_id == Candidate.id,
                metric.model_id == Candidate.model_id,
                metric.name == key,
            ),
        )
        rank = sa.case((metric.candidate_id.is_(None), 2), (metric.is_nan, 1), else_=0)
        keys = [SortKey(rank), SortKey(metric.value, ascending), tie]
    elif sort is CandidateSort.PARAM or sort is CandidateSort.TAG:
        entry: type[CandidateParam] | type[CandidateMetadata] = aliased(
            CandidateParam if sort is CandidateSort.PARAM else CandidateMetadata
        )
        query = query.outerjoin(
            entry, sa.and_(entry.candidate_id == Candidate.id, entry.name == key)
        )
        keys = [SortKey(CodepointOrder(entry.value), ascending), tie]
    elif sort is CandidateSort.NAME:
        keys = [SortKey(CodepointOrder(Candidate.name), ascending), tie]
    elif sort is CandidateSort.STATUS:
        status = sa.type_coerce(Candidate.status, sa.String())
        keys = [SortKey(CodepointOrder(status), ascending), tie]
    elif sort is CandidateSort.END_TIME:
        keys = [SortKey(Candidate.end_time, ascending), tie]
    elif sort is CandidateSort.DURATION:
        keys = [SortKey(Candidate.end_time - Candidate.start_time, ascending), tie]
    else:
        keys = [SortKey(Candidate.start_time, ascending), tie]
    signature = f"candidates:{sort.value}:{int(ascending)}:{key or ''}"
    return query, Sort(keys, signature=signature)


async def metric_history_page(
    session: AsyncSession, *, candidate: Candidate, name: str, window: Window
) -> KeysetPage[MetricPoint]:
    """The page `window` asks for of a metric's logged values, by step then timestamp."""
    query = sa.select(CandidateMetric).where(
        CandidateMetric.candidate_id == candidate.id, CandidateMetric.name == name
    )
    keys = [
        SortKey(CandidateMetric.step),
        SortKey(CandidateMetric.timestamp),
        SortKey(CandidateMetric.id),
    ]
    page = await keyset.read(session, query, Sort(keys, signature="metric_history"), window)
    return page.map(metric_point)


@dataclass(frozen=True)
class RunFilter:
    """MLflow's search_runs filter, checked before anything is read (`parse`)."""

    conditions: Sequence[sa.ColumnElement[bool]]

    @classmethod
    def parse(cls, text: str | None) -> RunFilter:
        return cls(compile_run_filter(text))


async def search_runs(
    session: AsyncSession,
    *,
    project: Project,
    experiment_iids: Collection[int],
    states: Sequence[LifecycleState],
    filter: RunFilter,
    order_by: Sequence[str] | None,
    page: Page,
) -> list[Candidate]:
    """MLflow's search_runs: candidates of the project's models with these iids, in
    these states, meeting `filter`, in MLflow's `order_by`; one row past the page tells
    whether another follows (see `fetch_runs`)."""
    # Ids, not a subquery: with the model known, PostgreSQL can walk the latest-metric
    # index of a metric-ordered search (see fetch_runs).
    model_ids = list(
        await session.scalars(
            sa.select(Model.id).where(
                Model.project_id == project.id, Model.iid.in_(experiment_iids)
            )
        )
    )
    return await fetch_runs(
        session,
        model_ids=model_ids,
        states=states,
        conditions=filter.conditions,
        order_by=order_by,
        page=page,
    )


def metric_point(row: CandidateMetric) -> MetricPoint:
    """A stored point of a history, with the logged model and dataset it names."""
    return MetricPoint(
        name=row.name,
        value=math.nan if row.is_nan or row.value is None else row.value,
        step=row.step,
        timestamp=row.timestamp,
        logged_model_eid=row.logged_model_eid,
        dataset_name=row.dataset_name,
        dataset_digest=row.dataset_digest,
    )
