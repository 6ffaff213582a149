"""Creating candidates, logging their metrics, changing and deleting them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from app.errors import InvalidValueError
from app.graphql.context import Info
from app.graphql.errors import NotFoundError, PermissionError, ValidationError
from app.graphql.nodes import for_change
from app.graphql.types.candidates import Candidate
from app.graphql.types.common import KeyValueInput, Long
from app.graphql.types.jobs import Job, JobStarted
from app.models import Candidate as CandidateRow
from app.models import CandidateStatus
from app.models import Model as ModelRow
from app.search.sql import datetime_to_ms
from app.services import candidates
from app.services.candidates import MetricPoint

CandidateResult = Annotated[
    Candidate | ValidationError | NotFoundError | PermissionError,
    strawberry.union("CandidateResult"),
]
CandidateDeleteResult = Annotated[
    JobStarted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("CandidateDeleteResult"),
]

FINAL_STATUSES = (CandidateStatus.FINISHED, CandidateStatus.FAILED, CandidateStatus.KILLED)


@strawberry.input
class CandidateCreateInput:
    model_id: strawberry.ID
    name: str | None = None
    params: list[KeyValueInput] | None = None
    metadata: list[KeyValueInput] | None = None


@strawberry.input
class CandidateUpdateInput:
    id: strawberry.ID
    name: str | None = None
    status: CandidateStatus | None = strawberry.field(
        default=None, description="FINISHED, FAILED or KILLED also set the end time."
    )
    metadata: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Entries to set; others stay."
    )


@strawberry.input
class CandidateDeleteInput:
    id: strawberry.ID


@strawberry.input
class MetricInput:
    name: str
    value: float
    step: Long = Long(0)
    timestamp: dt.datetime | None = strawberry.field(default=None, description="Now if omitted.")


@strawberry.input
class CandidateLogMetricsInput:
    id: strawberry.ID
    metrics: list[MetricInput]


async def candidate_create(info: Info, input: CandidateCreateInput) -> CandidateResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        model = await for_change(session, actor, ModelRow, input.model_id, field="modelId")
        row = await candidates.create_candidate(session, model=model, name=input.name, actor=actor)
        await candidates.log_batch(
            session,
            candidate=row,
            params=KeyValueInput.as_dict(input.params),
            tags=KeyValueInput.as_dict(input.metadata),
            actor=actor,
        )
    return Candidate.from_row(row)


async def candidate_update(info: Info, input: CandidateUpdateInput) -> CandidateResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, CandidateRow, input.id)
        ending = input.status in FINAL_STATUSES and row.end_time is None
        await candidates.update_candidate(
            session,
            candidate=row,
            name=input.name,
            status=input.status,
            end_time=candidates.now_ms() if ending else None,
            actor=actor,
        )
        if input.metadata:
            await candidates.log_batch(
                session, candidate=row, tags=KeyValueInput.as_dict(input.metadata), actor=actor
            )
    return Candidate.from_row(row)


async def candidate_log_metrics(info: Info, input: CandidateLogMetricsInput) -> CandidateResult:
    """Log metric values (MLflow's log-batch limits apply: 1,000 per call)."""
    actor = info.context.actor
    now = candidates.now_ms()
    points = [
        MetricPoint(
            name=metric.name,
            value=metric.value,
            step=int(metric.step),
            timestamp=now
            if metric.timestamp is None
            else _epoch_ms(metric.timestamp, field=f"metrics[{index}].timestamp"),
        )
        for index, metric in enumerate(input.metrics)
    ]
    async with info.context.database.session() as session:
        row = await for_change(session, actor, CandidateRow, input.id)
        await candidates.log_batch(session, candidate=row, metrics=points, actor=actor)
    return Candidate.from_row(row)


def _epoch_ms(timestamp: dt.datetime, *, field: str) -> int:
    # A time without an offset could be any of 26 hours: refused, not guessed.
    if timestamp.utcoffset() is None:
        raise InvalidValueError("a metric's timestamp needs a UTC offset", field=field)
    return datetime_to_ms(timestamp)


async def candidate_delete(info: Info, input: CandidateDeleteInput) -> CandidateDeleteResult:
    """Delete a candidate for good; the job removes its metrics and artifacts."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, CandidateRow, input.id)
        job = await candidates.destroy_candidate(session, candidate=row, actor=actor)
    return JobStarted(job=Job.from_row(job))
