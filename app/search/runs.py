"""MLflow's run search over `Candidate`: `compile_run_filter` and `compile_run_order_by`,
`run_condition` for one comparison (GraphQL's structured candidate filter builds its own
comparisons and compiles them here, so both spellings select the same candidates), and
`fetch_runs`, which reads a page in MLflow's run order, walking the latest-metrics index
when the order starts with a metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler

from app.models import (
    Candidate,
    CandidateInput,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateParam,
    LifecycleState,
    User,
)
from app.search.grammar import (
    IS_NOT_NULL,
    IS_NULL,
    RUN_SEARCH,
    Comparison,
    Value,
    parse_filter,
    parse_order_by,
)
from app.search.paging import Page
from app.search.sql import (
    CodepointOrder,
    direction,
    integer_condition,
    metric_value_condition,
    string_condition,
)

__all__ = [
    "RUN_NAME_TAG",
    "compile_run_filter",
    "compile_run_order_by",
    "fetch_runs",
    "run_condition",
]

# The run tag MLflow keeps the run name in; here it is the candidate's name column.
RUN_NAME_TAG = "mlflow.runName"


def _key_value_exists(
    table: type[CandidateParam] | type[CandidateMetadata],
    key: str,
    op: str,
    value: Value,
) -> sa.ColumnElement[bool]:
    """A param or tag comparison: the candidate has the key, with a matching value."""
    found = sa.exists().where(table.candidate_id == Candidate.id, table.name == key)
    if op == IS_NULL:
        return ~found
    if op == IS_NOT_NULL:
        return found
    return found.where(string_condition(table.value, op, value))


def compile_run_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Candidate` for an MLflow run filter."""
    return [run_condition(c) for c in parse_filter(filter_string, RUN_SEARCH)]


def run_condition(comparison: Comparison) -> sa.ColumnElement[bool]:
    """One comparison on `Candidate`: parsed from a filter, or built by another surface
    (GraphQL's structured candidate filter) so that both mean the same."""
    entity, key, op, value = comparison.entity, comparison.key, comparison.op, comparison.value
    if entity == "metric":
        assert isinstance(value, float)
        return _metric_condition(key, op, value)
    if entity == "param":
        return _key_value_exists(CandidateParam, key, op, value)
    if entity == "tag":
        if key == RUN_NAME_TAG:
            return _run_name_condition(op, value)
        return _key_value_exists(CandidateMetadata, key, op, value)
    if entity == "dataset":
        return _dataset_condition(key, op, value)
    if key in ("start_time", "end_time"):
        assert isinstance(value, int)
        return integer_condition(getattr(Candidate, key), op, value)
    if key == "run_name":
        return _run_name_condition(op, value)
    if key == "run_id":
        return string_condition(Candidate.eid, op, value)
    if key == "status":
        return string_condition(_status_text(), op, value)
    # user_id: MLflow's user id is a user name; here it is the candidate's user.
    return (
        sa.exists()
        .where(User.id == Candidate.user_id)
        .where(string_condition(User.username, op, value))
    )


# The input tag in which MLflow's client records a dataset's role ("training", "eval").
DATASET_CONTEXT_TAG = "mlflow.data.context"


def _dataset_condition(key: str, op: str, value: Value) -> sa.ColumnElement[bool]:
    """The candidate has a dataset input (stored as MLflow sent it) whose name, digest or
    context matches."""
    found = sa.exists().where(
        CandidateInput.candidate_id == Candidate.id, CandidateInput.kind == "dataset_input"
    )
    if key == "context":
        return found.where(_DatasetContextMatch(CandidateInput.payload, op, value))
    return found.where(
        string_condition(CandidateInput.payload[("dataset", key)].as_string(), op, value)
    )


class _DatasetContextMatch(sa.ColumnElement[bool]):
    """Whether one of a dataset input's tags is `mlflow.data.context` with a matching value.
    The tags are a JSON list inside the stored input, read with each backend's JSON table
    function; entries that are not ``{"key", "value"}`` objects match nothing."""

    __visit_name__ = "mlflow_search_dataset_context"
    # The comparison is rendered at compile time, so statements holding one are not cached.
    inherit_cache = False
    _is_implicitly_boolean = True

    def __init__(self, payload: sa.SQLColumnExpression[Any], op: str, value: Value) -> None:
        self.payload = coercions.expect(roles.ExpressionElementRole, payload)
        # Not `op` nor `comparator`: ColumnElement already has both.
        self.search_op = op
        self.search_value = value
        self.type = sa.Boolean()

    @property
    def _from_objects(self) -> Any:
        return self.payload._from_objects

    def render(self, compiler: SQLCompiler, source: str, key: str, value: str, **kw: Any) -> str:
        condition = sa.and_(
            sa.literal_column(key, sa.String()) == DATASET_CONTEXT_TAG,
            string_condition(
                sa.literal_column(value, sa.String()), self.search_op, self.search_value
            ),
        )
        return f"EXISTS (SELECT 1 FROM {source} WHERE {compiler.process(condition, **kw)})"


@compiles(_DatasetContextMatch, "sqlite")
def _compile_dataset_context_sqlite(
    element: _DatasetContextMatch, compiler: SQLCompiler, **kw: Any
) -> str:
    payload = compiler.process(element.payload, **kw)
    tags = f"json_extract({payload}, '$.tags')"
    is_object = "dataset_tag.type = 'object'"
    return element.render(
        compiler,
        f"json_each(CASE WHEN json_type({payload}, '$.tags') = 'array' THEN {tags} "
        "ELSE '[]' END) AS dataset_tag",
        f"CASE WHEN {is_object} THEN json_extract(dataset_tag.value, '$.key') END",
        f"CASE WHEN {is_object} THEN json_extract(dataset_tag.value, '$.value') END",
        **kw,
    )


@compiles(_DatasetContextMatch, "postgresql")
def _compile_dataset_context_postgresql(
    element: _DatasetContextMatch, compiler: SQLCompiler, **kw: Any
) -> str:
    tags = f"(({compiler.process(element.payload, **kw)})::json -> 'tags')"
    is_object = "json_typeof(dataset_tag.value) = 'object'"
    return element.render(
        compiler,
        f"json_array_elements(CASE WHEN json_typeof({tags}) = 'array' THEN {tags} "
        "ELSE '[]'::json END) AS dataset_tag",
        f"CASE WHEN {is_object} THEN dataset_tag.value ->> 'key' END",
        f"CASE WHEN {is_object} THEN dataset_tag.value ->> 'value' END",
        **kw,
    )


def _status_text() -> sa.ColumnElement[str]:
    # The enum column would refuse to bind an unknown status ('finished'); MLflow compares
    # the text, so a wrong case simply matches nothing.
    return sa.type_coerce(Candidate.status, sa.String(32))


def _run_name_condition(op: str, value: Value) -> sa.ColumnElement[bool]:
    if op == IS_NULL:
        return Candidate.name.is_(None)
    if op == IS_NOT_NULL:
        return Candidate.name.is_not(None)
    return string_condition(Candidate.name, op, value)


def _metric_condition(key: str, op: str, value: float) -> sa.ColumnElement[bool]:
    metric = CandidateLatestMetric
    # By candidate alone: the primary key (candidate_id, name) answers it in one probe.
    # Tying metric.model_id to the candidate's would let PostgreSQL, misled by statistics
    # older than a model's runs, rescan the model's index entries once per candidate.
    return sa.exists().where(
        metric.candidate_id == Candidate.id,
        metric.name == key,
        metric_value_condition(metric.value, metric.is_nan, op, value),
    )


def compile_run_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """ORDER BY expressions on `Candidate` for MLflow's run order_by, then MLflow's
    tie-breakers: start time (newest first, unless ordered by already), then run id.

    Metrics sort numbers (infinities included) first, then NaN, then candidates without
    the metric; params, tags and attributes sort values first, missing ones last."""
    clauses: list[sa.ColumnElement[Any]] = []
    ordered_by_start_time = False
    for order in parse_order_by(order_by, RUN_SEARCH):
        key = order.key
        if order.entity == "metric":
            metric = CandidateLatestMetric
            where = (metric.candidate_id == Candidate.id, metric.name == key)
            rank = sa.select(sa.case((metric.is_nan, 1), else_=0)).where(*where).scalar_subquery()
            value = sa.select(metric.value).where(*where).scalar_subquery()
            clauses.append(sa.func.coalesce(rank, 2).asc())
            clauses.append(direction(value, order.ascending))
            continue
        expression: sa.SQLColumnExpression[Any]
        if order.entity == "param":
            expression = CodepointOrder(_key_value_scalar(CandidateParam, key))
        elif order.entity == "tag" and key != RUN_NAME_TAG:
            expression = CodepointOrder(_key_value_scalar(CandidateMetadata, key))
        elif order.entity == "tag" or key == "run_name":
            expression = CodepointOrder(Candidate.name)
        elif key in ("start_time", "end_time"):
            ordered_by_start_time = ordered_by_start_time or key == "start_time"
            expression = getattr(Candidate, key)
        elif key == "run_id":
            expression = Candidate.eid
        elif key == "status":
            expression = CodepointOrder(_status_text())
        else:  # user_id
            expression = CodepointOrder(
                sa.select(User.username).where(User.id == Candidate.user_id).scalar_subquery()
            )
        clauses.append(direction(expression, order.ascending))
    if not ordered_by_start_time:
        clauses.append(direction(Candidate.start_time, ascending=False))
    clauses.append(Candidate.eid.asc())
    return clauses


async def fetch_runs(
    session: AsyncSession,
    *,
    model_ids: Sequence[int],
    states: Sequence[LifecycleState],
    conditions: Sequence[sa.ColumnElement[bool]],
    order_by: Sequence[str] | None,
    page: Page,
) -> list[Candidate]:
    """A page of the candidates of `model_ids` in `states` meeting `conditions`, in
    MLflow's run order.

    Ordered by a metric first, the page is read in two parts, so that PostgreSQL walks
    the (model_id, name, value) index of latest metrics and stops after the page instead
    of sorting every matching candidate: first the candidates holding a number for the
    metric, by value; only when the page reaches past them, the rest (NaN, then
    missing), which is what `compile_run_order_by` orders after the numbers anyway.

    The plan must not depend on how fresh PostgreSQL's statistics are: right after a
    sweep logged a model's runs they still count none, and a plan costed on that rescans
    the model's rows once per row. So the walk names the models on the metric's index
    alone and reaches each candidate by its primary key; the candidate's own model_id
    (equal to the metric's) is left out, since it would offer the rescan again."""
    orders = compile_run_order_by(order_by)
    parsed = parse_order_by(order_by, RUN_SEARCH)
    in_scope = (Candidate.model_id.in_(model_ids), Candidate.state.in_(states), *conditions)
    query = sa.select(Candidate).where(*in_scope)
    if not parsed or parsed[0].entity != "metric":
        return list(await session.scalars(page.of(query.order_by(*orders))))
    leading = parsed[0]
    metric = aliased(CandidateLatestMetric)
    valued = sa.and_(
        metric.candidate_id == Candidate.id,
        metric.name == leading.key,
        metric.value.is_not(None),
    )
    numbered = (
        sa.select(Candidate)
        .join(metric, valued)
        .where(metric.model_id.in_(model_ids), Candidate.state.in_(states), *conditions)
    )
    by_value = metric.value.asc() if leading.ascending else metric.value.desc()
    # compile_run_order_by gives a metric two clauses (rank, value); the tie-breakers follow.
    tie_breakers = orders[2:]
    numbers = list(await session.scalars(page.of(numbered.order_by(by_value, *tie_breakers))))
    wanted = page.size + 1
    if len(numbers) >= wanted:
        return numbers
    if numbers or page.offset == 0:
        valued_count = page.offset + len(numbers)
    else:  # the page starts past the numbers: how far past?
        valued_count = (
            await session.scalar(sa.select(sa.func.count()).select_from(numbered.subquery())) or 0
        )
    rest = query.where(~sa.exists().where(valued)).order_by(*orders)
    skipped = max(0, page.offset - valued_count)
    numbers += await session.scalars(rest.offset(skipped).limit(wanted - len(numbers)))
    return numbers


def _key_value_scalar(
    table: type[CandidateParam] | type[CandidateMetadata], key: str
) -> sa.ScalarSelect[Any]:
    return (
        sa.select(table.value)
        .where(table.candidate_id == Candidate.id, table.name == key)
        .scalar_subquery()
    )
