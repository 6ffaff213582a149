"""Candidates (MLflow runs), their metrics, and how a model's candidates are filtered and
ordered. Filters compile through the same code as MLflow's search_runs, so a structured
filter and its MLflow spelling in `query` select the same candidates."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
import strawberry
from strawberry import relay

from app import models
from app.errors import InvalidValueError, NotFoundError
from app.graphql.connections import Connection, paginate
from app.graphql.context import Info
from app.graphql.nodes import readable_nodes
from app.graphql.types.common import KeyValue, Long, OrderDirection
from app.graphql.types.users import User
from app.rest.packages import CANDIDATE_PREFIX
from app.services import candidates, search
from app.services.candidates import CandidateSort, MetricPoint

if TYPE_CHECKING:
    from app.graphql.types.models import Model, ModelVersion, PackageFile

ModelType = Annotated["Model", strawberry.lazy("app.graphql.types.models")]
ModelVersionType = Annotated["ModelVersion", strawberry.lazy("app.graphql.types.models")]
PackageFileType = Annotated["PackageFile", strawberry.lazy("app.graphql.types.models")]

strawberry.enum(CandidateSort, name="CandidateOrderField")


@strawberry.enum
class MetricValueKind(enum.Enum):
    FINITE = "finite"
    NAN = "nan"
    POSITIVE_INFINITY = "positive_infinity"
    NEGATIVE_INFINITY = "negative_infinity"


@strawberry.type(description="A metric value at a step. `value` is null unless `kind` is FINITE.")
class Metric:
    name: str
    value: float | None
    kind: MetricValueKind
    step: Long
    timestamp: dt.datetime

    @classmethod
    def from_point(cls, point: MetricPoint) -> Metric:
        value: float | None = point.value
        if math.isnan(point.value):
            kind, value = MetricValueKind.NAN, None
        elif math.isinf(point.value):
            kind = (
                MetricValueKind.POSITIVE_INFINITY
                if point.value > 0
                else MetricValueKind.NEGATIVE_INFINITY
            )
            value = None
        else:
            kind = MetricValueKind.FINITE
        return cls(
            name=point.name,
            value=value,
            kind=kind,
            step=Long(point.step),
            timestamp=_datetime(point.timestamp),
        )


# --- Filtering and ordering ----------------------------------------------------------------


@strawberry.enum
class MetricOperator(enum.Enum):
    GT = search.GT
    GTE = search.GE
    LT = search.LT
    LTE = search.LE
    EQ = search.EQ
    NE = search.NE


@strawberry.enum
class TextOperator(enum.Enum):
    EQ = search.EQ
    NE = search.NE
    LIKE = search.LIKE
    ILIKE = search.ILIKE
    IN = search.IN


@strawberry.input(description="A latest metric value compared with a number.")
class MetricCondition:
    name: str
    op: MetricOperator
    value: float


@strawberry.input(
    description="A param or tag compared with `value` (LIKE patterns take % and _), or, "
    "with IN, with `values`."
)
class TextCondition:
    name: str
    op: TextOperator
    value: str | None = None
    values: list[str] | None = None

    def comparison(self, entity: search.Entity, field: str) -> search.Comparison:
        if self.op is TextOperator.IN:
            if self.values is None or self.value is not None:
                raise InvalidValueError(f"IN on '{self.name}' takes `values`", field=field)
            return search.Comparison(entity, self.name, search.IN, tuple(self.values))
        if self.value is None or self.values is not None:
            raise InvalidValueError(
                f"{self.op.name} on '{self.name}' takes one `value`", field=field
            )
        return search.Comparison(entity, self.name, self.op.value, self.value)


@strawberry.input(description="Conditions a candidate must all meet.")
class CandidateFilter:
    metrics: list[MetricCondition] | None = None
    params: list[TextCondition] | None = None
    tags: list[TextCondition] | None = None
    status: list[models.CandidateStatus] | None = None
    name_contains: str | None = strawberry.field(
        default=None, description="A part of the name, in any case."
    )
    has_version: bool | None = strawberry.field(
        default=None, description="Whether the candidate was promoted into a version."
    )
    query: str | None = strawberry.field(
        default=None,
        description="MLflow's search_runs filter, e.g. "
        "\"metrics.accuracy > 0.9 and params.optimizer = 'adam'\".",
    )

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        comparisons = [
            search.Comparison("metric", c.name, c.op.value, float(c.value))
            for c in self.metrics or ()
        ]
        comparisons += [c.comparison("param", "filter.params") for c in self.params or ()]
        comparisons += [c.comparison("tag", "filter.tags") for c in self.tags or ()]
        if self.status is not None:
            statuses = tuple(status.value for status in self.status)
            comparisons.append(search.Comparison("attribute", "status", search.IN, statuses))
        found = [search.run_condition(comparison) for comparison in comparisons]
        try:
            found += search.compile_run_filter(self.query)
        except InvalidValueError as error:
            raise InvalidValueError(error.message, field="filter.query") from None
        if self.name_contains is not None:
            found.append(candidates.name_contains(self.name_contains))
        if self.has_version is not None:
            found.append(candidates.has_version(self.has_version))
        return found


@strawberry.input
class CandidateOrder:
    field: CandidateSort = CandidateSort.CREATED_AT
    key: str | None = strawberry.field(default=None, description="The metric or param to order by.")
    direction: OrderDirection = OrderDirection.DESC


# --- The candidate ---------------------------------------------------------------------------


@strawberry.type(description="A training run of a model (an MLflow run).")
class Candidate(relay.Node):
    id: relay.NodeID[int]
    iid: int = strawberry.field(description="The id within its project.")
    eid: str = strawberry.field(description="The MLflow run id.")
    name: str = strawberry.field(description="The run name; `candidate-<iid>` if it has none.")
    status: models.CandidateStatus
    row: strawberry.Private[models.Candidate]

    @classmethod
    def from_row(cls, row: models.Candidate) -> Candidate:
        name = row.name or f"candidate-{row.iid}"
        return cls(id=row.id, iid=row.iid, eid=row.eid, name=name, status=row.status, row=row)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Candidate | None]:
        return await readable_nodes(info, info.context.loaders.candidate, node_ids, cls.from_row)

    @strawberry.field
    def start_time(self) -> dt.datetime | None:
        return _time(self.row.start_time)

    @strawberry.field
    def end_time(self) -> dt.datetime | None:
        return _time(self.row.end_time)

    @strawberry.field
    def deleted(self) -> bool:
        """Deleted (through MLflow) and restorable until purged."""
        return self.row.state is not models.LifecycleState.ACTIVE

    @strawberry.field
    async def model(self, info: Info) -> ModelType:
        from app.graphql.types.models import Model

        row = await info.context.loaders.model.load(self.row.model_id)
        if row is None:
            raise NotFoundError(f"The model of candidate {self.eid} is gone")
        return Model.from_row(row)

    @strawberry.field
    async def author(self, info: Info) -> User | None:
        if self.row.user_id is None:
            return None
        row = await info.context.loaders.user.load(self.row.user_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field
    async def params(self, info: Info) -> list[KeyValue]:
        return KeyValue.listed(await info.context.loaders.params.load(self.row.id))

    @strawberry.field
    async def metadata(self, info: Info) -> list[KeyValue]:
        """MLflow's tags of the run."""
        return KeyValue.listed(await info.context.loaders.candidate_metadata.load(self.row.id))

    @strawberry.field
    async def metrics(self, info: Info, names: list[str] | None = None) -> list[Metric]:
        """The latest value of each metric, or of those in `names`."""
        points = await info.context.loaders.latest_metrics.load(self.row.id)
        wanted = set(names) if names is not None else None
        return [
            Metric.from_point(point) for point in points if wanted is None or point.name in wanted
        ]

    @strawberry.field
    async def metric(self, info: Info, name: str) -> Metric | None:
        """The latest value of one metric."""
        points = await info.context.loaders.latest_metrics.load(self.row.id)
        return next((Metric.from_point(p) for p in points if p.name == name), None)

    @strawberry.field
    async def metric_history(
        self,
        info: Info,
        name: str,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Metric]:
        """Every value logged for a metric, by step then time."""
        query, sort = candidates.metric_history_query(self.row, name=name)
        return await paginate(
            info.context.database,
            query,
            sort,
            first=first,
            after=after,
            last=last,
            before=before,
            node=_history_point,
        )

    @strawberry.field
    async def version(self, info: Info) -> ModelVersionType | None:
        """The version this candidate was promoted into."""
        from app.graphql.types.models import ModelVersion

        if self.row.model_version_id is None:
            return None
        row = await info.context.loaders.version.load(self.row.model_version_id)
        return ModelVersion.from_row(row) if row is not None else None

    @strawberry.field
    async def artifacts(self, info: Info) -> list[PackageFileType]:
        """The files the candidate logged (its artifacts)."""
        from app.graphql.types.models import PackageFile

        return await PackageFile.list(
            info,
            project_id=self.row.project_id,
            package_id=self.row.package_id,
            ref=f"{CANDIDATE_PREFIX}{self.row.iid}",
        )


def _time(milliseconds: int | None) -> dt.datetime | None:
    return None if milliseconds is None else _datetime(milliseconds)


def _datetime(milliseconds: int) -> dt.datetime:
    """MLflow's milliseconds as a datetime; the few beyond year 1 to 9999 (MLflow takes
    any 64-bit number) show as the nearest one there is."""
    try:
        return search.ms_to_datetime(milliseconds)
    except OverflowError:
        limit = dt.datetime.max if milliseconds > 0 else dt.datetime.min
        return limit.replace(tzinfo=dt.UTC)


def _history_point(row: Any) -> Metric:
    return Metric.from_point(candidates.metric_point(row))
