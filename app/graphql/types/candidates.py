"""Candidates (MLflow runs), their metrics, and how a model's candidates are filtered and
ordered. A filter becomes the candidate search's `CandidateQuery` (app/services/candidates.py),
which compiles through the same code as MLflow's search_runs, so a structured filter and
its MLflow spelling in `query` select the same candidates."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay

from app import models, web_paths
from app.errors import InvalidValueError, NotFoundError
from app.graphql import connections
from app.graphql.connections import Connection
from app.graphql.context import Info
from app.graphql.nodes import readable_nodes
from app.graphql.types.charts import MetricSeries
from app.graphql.types.common import KeyValue, Long, OrderDirection
from app.graphql.types.permissions import CandidatePermissions, permissions
from app.graphql.types.users import User
from app.search import grammar
from app.search.sql import ms_to_datetime
from app.services import candidates, validation
from app.services.candidates import (
    CandidateLifecycle,
    CandidateQuery,
    CandidateSort,
    DatasetInput,
    MetricPoint,
)
from app.services.keyset import KeysetPage, Window
from app.services.packages import CANDIDATE_PREFIX

if TYPE_CHECKING:
    from app.graphql.types.logged_models import LoggedModel
    from app.graphql.types.models import Model, ModelVersion, PackageFile

LoggedModelType = Annotated["LoggedModel", strawberry.lazy("app.graphql.types.logged_models")]
ModelType = Annotated["Model", strawberry.lazy("app.graphql.types.models")]
ModelVersionType = Annotated["ModelVersion", strawberry.lazy("app.graphql.types.models")]
PackageFileType = Annotated["PackageFile", strawberry.lazy("app.graphql.types.models")]

strawberry.enum(CandidateSort, name="CandidateOrderField")
strawberry.enum(CandidateLifecycle, name="CandidateLifecycle")


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
    GT = grammar.GT
    GTE = grammar.GE
    LT = grammar.LT
    LTE = grammar.LE
    EQ = grammar.EQ
    NE = grammar.NE


@strawberry.enum
class TextOperator(enum.Enum):
    EQ = grammar.EQ
    NE = grammar.NE
    LIKE = grammar.LIKE
    ILIKE = grammar.ILIKE
    IN = grammar.IN


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

    def comparison(self, entity: grammar.Entity, field: str) -> grammar.Comparison:
        if self.op is TextOperator.IN:
            if self.values is None or self.value is not None:
                raise InvalidValueError(f"IN on '{self.name}' takes `values`", field=field)
            return grammar.Comparison(entity, self.name, grammar.IN, tuple(self.values))
        if self.value is None or self.values is not None:
            raise InvalidValueError(
                f"{self.op.name} on '{self.name}' takes one `value`", field=field
            )
        return grammar.Comparison(entity, self.name, self.op.value, self.value)


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
    lifecycle: CandidateLifecycle = strawberry.field(
        default=CandidateLifecycle.ACTIVE,
        description="Active candidates, deleted ones (restorable until purged), or all.",
    )

    def candidate_query(self) -> CandidateQuery:
        """The filter as the candidate search takes it."""
        comparisons = [
            grammar.Comparison("metric", c.name, c.op.value, float(c.value))
            for c in self.metrics or ()
        ]
        comparisons += [c.comparison("param", "filter.params") for c in self.params or ()]
        comparisons += [c.comparison("tag", "filter.tags") for c in self.tags or ()]
        if self.status is not None:
            statuses = tuple(status.value for status in self.status)
            comparisons.append(grammar.Comparison("attribute", "status", grammar.IN, statuses))
        return CandidateQuery(
            comparisons=comparisons,
            query=self.query,
            name_contains=self.name_contains,
            has_version=self.has_version,
            lifecycle=self.lifecycle,
        )


@strawberry.input
class CandidateOrder:
    field: CandidateSort = CandidateSort.CREATED_AT
    key: str | None = strawberry.field(
        default=None, description="The metric, param or tag to order by (METRIC, PARAM, TAG)."
    )
    direction: OrderDirection = OrderDirection.DESC


async def candidate_page(
    info: Info,
    search: Callable[..., Awaitable[KeysetPage[models.Candidate]]],
    filter: CandidateFilter | None,
    order_by: CandidateOrder | None,
    window: Window,
) -> Connection[Candidate]:
    """A page of a candidate search (`candidates.search` of a model, `search_project` of
    a project), its arguments translated; a missing order key is named as `orderBy.key`."""
    order = order_by or CandidateOrder()
    async with info.context.database.session(read_only=True) as session:
        try:
            page = await search(
                session,
                filter=(filter or CandidateFilter()).candidate_query(),
                sort=order.field,
                key=order.key,
                ascending=order.direction.ascending,
                window=window,
            )
        except InvalidValueError as error:
            if error.field != "key":
                raise
            raise InvalidValueError(error.message, field="orderBy.key") from None
    return connections.connection(page, Candidate.from_row)


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
    async def user_permissions(self, info: Info) -> CandidatePermissions:
        """What the caller may do with this candidate: the buttons a UI shows."""
        return await permissions(info, CandidatePermissions, self.row.project_id)

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
    async def web_path(self, info: Info) -> str:
        """The candidate's page in the web UI: /<project>/-/models/<name>/candidates/<iid>."""
        model = await info.context.loaders.model.load(self.row.model_id)
        project = await info.context.loaders.project.load(self.row.project_id)
        if model is None or project is None:
            raise NotFoundError(f"The model of candidate {self.eid} is gone")
        return web_paths.candidate_page(project.path, model.name, self.row.iid)

    @strawberry.field
    async def author(self, info: Info) -> User | None:
        if self.row.user_id is None:
            return None
        row = await info.context.loaders.user.load(self.row.user_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field
    def created_at(self) -> dt.datetime:
        """When the registry recorded the candidate."""
        return self.row.created_at

    @strawberry.field
    async def params(self, info: Info, names: list[str] | None = None) -> list[KeyValue]:
        """The params by name, or those of them in `names`."""
        loaders = info.context.loaders
        if names is None:
            return KeyValue.listed(await loaders.params.load(self.row.id))
        return KeyValue.listed(
            await loaders.params_named.load((self.row.id, validation.names(names, field="names")))
        )

    @strawberry.field
    async def metadata(self, info: Info, names: list[str] | None = None) -> list[KeyValue]:
        """MLflow's tags of the run by name, or those of them in `names`."""
        loaders = info.context.loaders
        if names is None:
            return KeyValue.listed(await loaders.candidate_metadata.load(self.row.id))
        return KeyValue.listed(
            await loaders.metadata_named.load((self.row.id, validation.names(names, field="names")))
        )

    @strawberry.field
    async def inputs(self, info: Info) -> list[DatasetInputType]:
        """The datasets the run used (MLflow's log_input), in the order they were logged."""
        found = await info.context.loaders.dataset_inputs.load(self.row.id)
        return [DatasetInputType.from_input(dataset) for dataset in found]

    @strawberry.field
    async def parent(self, info: Info) -> Candidate | None:
        """The run this one is nested in (its `mlflow.parentRunId` tag), deleted or not."""
        row = await info.context.loaders.parent.load(self.row.id)
        return Candidate.from_row(row) if row is not None else None

    @strawberry.field
    async def children(
        self, info: Info, first: int = candidates.DEFAULT_CHILDREN
    ) -> list[Candidate]:
        """The active runs nested in this one, by start time: the first `first` (0 to
        1,000) of them."""
        limit = candidates.children_limit(first)
        rows = await info.context.loaders.children.load((self.row.id, limit))
        return [Candidate.from_row(row) for row in rows]

    @strawberry.field
    async def metrics(self, info: Info, names: list[str] | None = None) -> list[Metric]:
        """The latest value of each metric, or of those in `names`."""
        loaders = info.context.loaders
        if names is None:
            points = await loaders.latest_metrics.load(self.row.id)
        else:
            asked = (self.row.id, validation.names(names, field="names"))
            points = await loaders.latest_metrics_named.load(asked)
        return [Metric.from_point(point) for point in points]

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
    ) -> Connection[Metric] | None:
        """Every value logged for a metric, by step then time."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        async with info.context.database.session(read_only=True) as session:
            page = await candidates.metric_history_page(
                session, candidate=self.row, name=name, window=window
            )
        return connections.connection(page, Metric.from_point)

    @strawberry.field
    async def metric_histories(
        self,
        info: Info,
        names: list[str],
        max_points: int = candidates.DEFAULT_CHART_POINTS,
        min_step: Long | None = None,
        max_step: Long | None = None,
    ) -> list[MetricSeries]:
        """Up to 20 metrics' histories for a chart, one series per name in the order
        given (empty for a metric never logged), each cut to at most `maxPoints`
        (1 to 10,000) values that keep the first and the last, within [minStep, maxStep]
        (see MetricSeries for NaN and infinities)."""
        request = candidates.ChartRequest.checked(
            names=names, max_points=max_points, min_step=min_step, max_step=max_step
        )
        series = await info.context.loaders.chart_series.load((self.row.id, request))
        return [MetricSeries.from_points(*pair) for pair in zip(request.names, series, strict=True)]

    @strawberry.field
    async def version(self, info: Info) -> ModelVersionType | None:
        """The version this candidate was promoted into."""
        from app.graphql.types.models import ModelVersion

        if self.row.model_version_id is None:
            return None
        row = await info.context.loaders.version.load(self.row.model_version_id)
        return ModelVersion.from_row(row) if row is not None else None

    @strawberry.field
    async def logged_models(self, info: Info) -> list[LoggedModelType]:
        """The models this candidate's run logged (MLflow 3's logged models), oldest first."""
        from app.graphql.types.logged_models import LoggedModel

        rows = await info.context.loaders.candidate_logged_models.load(self.row.id)
        return [LoggedModel.from_row(row) for row in rows]

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


@strawberry.type(
    name="DatasetInput",
    description="A dataset a candidate used, as MLflow's log_input described it. `schema` "
    "and `profile` are the JSON text MLflow logged, if it logged them.",
)
class DatasetInputType:
    name: str
    digest: str | None
    source_type: str | None
    source: str | None
    schema: str | None
    profile: str | None
    context: str | None = strawberry.field(
        description="What the dataset was used for: `mlflow.data.context` among the tags."
    )
    tags: list[KeyValue] = strawberry.field(description="The input's tags, by name.")

    @classmethod
    def from_input(cls, dataset: DatasetInput) -> DatasetInputType:
        return cls(
            name=dataset.name,
            digest=dataset.digest,
            source_type=dataset.source_type,
            source=dataset.source,
            schema=dataset.schema,
            profile=dataset.profile,
            context=dataset.context,
            tags=KeyValue.listed(dataset.tags),
        )


def _time(milliseconds: int | None) -> dt.datetime | None:
    return None if milliseconds is None else _datetime(milliseconds)


def _datetime(milliseconds: int) -> dt.datetime:
    """MLflow's milliseconds as a datetime; the few beyond year 1 to 9999 (MLflow takes
    any 64-bit number) show as the nearest one there is."""
    try:
        return ms_to_datetime(milliseconds)
    except OverflowError:
        limit = dt.datetime.max if milliseconds > 0 else dt.datetime.min
        return limit.replace(tzinfo=dt.UTC)
