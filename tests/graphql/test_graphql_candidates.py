"""Model.candidates over GraphQL: structured filters and the MLflow filter grammar, the
total order of every sort (ties, infinities, NaN, missing values), keyset pagination in
both directions, and the metrics of a candidate, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.errors import NotFoundError
from app.models import CandidateStatus
from app.services import candidates, models, projects, versions
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from tests.graphql_support import GraphQLApi, edges_of, graphql_api

T0 = 1_700_000_000_000  # milliseconds since the epoch

CANDIDATES = """
query(
  $path: String!, $model: String!, $filter: CandidateFilter, $orderBy: CandidateOrder,
  $first: Int, $after: String, $last: Int, $before: String
) {
  project(path: $path) {
    model(name: $model) {
      candidates(
        filter: $filter, orderBy: $orderBy,
        first: $first, after: $after, last: $last, before: $before
      ) {
        totalCount
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id iid name startTime } }
      }
    }
  }
}
"""

Value = float | Sequence[float]


@dataclass
class Seed:
    """A candidate to create: metrics give their latest value, or their history by step."""

    name: str
    metrics: dict[str, Value] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    status: CandidateStatus = CandidateStatus.RUNNING
    start_time: int | None = None
    promote: bool = False
    deleted: bool = False


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


def metric_points(metrics: dict[str, Value]) -> list[MetricPoint]:
    points = []
    for name, value in metrics.items():
        history = [value] if isinstance(value, float | int) else list(value)
        for step, point in enumerate(history):
            points.append(
                MetricPoint(name=name, value=float(point), timestamp=T0 + step, step=step)
            )
    return points


async def seed(api: GraphQLApi, model_name: str, seeds: Sequence[Seed]) -> list[int]:
    """Create the candidates, in order, in the model with this slug (created if new);
    returns their iids."""
    iids = []
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        try:
            model = await models.get_model(session, project=project, name=model_name)
        except NotFoundError:
            model = await models.create_model(
                session, project=project, display_name=model_name, name=model_name, actor=OPERATOR
            )
        for number, spec in enumerate(seeds):
            candidate = await candidates.create_candidate(
                session,
                model=model,
                name=spec.name,
                status=spec.status,
                start_time=T0 + number if spec.start_time is None else spec.start_time,
                actor=OPERATOR,
            )
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=metric_points(spec.metrics),
                params=spec.params,
                tags=spec.tags,
                actor=OPERATOR,
            )
            if spec.promote:
                await versions.create_version(
                    session, model=model, candidate=candidate, actor=OPERATOR
                )
            if spec.deleted:
                await candidates.delete_candidate(session, candidate=candidate, actor=OPERATOR)
            iids.append(candidate.iid)
    return iids


async def connection(api: GraphQLApi, model: str, **arguments: Any) -> dict[str, Any]:
    variables = {"path": api.project_path, "model": model}
    variables.update({name: value for name, value in arguments.items() if value is not None})
    found = await api.data(CANDIDATES, variables)
    model_data = found["project"]["model"]
    assert model_data is not None, f"model {model!r} not found"
    result: dict[str, Any] = model_data["candidates"]
    return result


async def names(api: GraphQLApi, model: str, **arguments: Any) -> list[str]:
    return [node["name"] for node in edges_of(await connection(api, model, **arguments))]


async def iids(api: GraphQLApi, model: str, **arguments: Any) -> list[int]:
    return [node["iid"] for node in edges_of(await connection(api, model, **arguments))]


def order(field_name: str, direction: str, key: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"field": field_name, "direction": direction}
    if key is not None:
        value["key"] = key
    return value


# --- filters ------------------------------------------------------------------------------

FILTER_MODEL = "filters"
FILTER_SEEDS = [
    Seed(
        "Alpha-Baseline",
        metrics={"acc": [0.1, 0.9], "loss": 0.2},
        params={"opt": "adam", "lr": "0.1"},
        tags={"team": "Vision"},
        status=CandidateStatus.FINISHED,
    ),
    Seed(
        "beta-run",
        metrics={"acc": 0.5, "loss": 0.5},
        params={"opt": "sgd", "lr": "0.01"},
        tags={"team": "vision"},
        status=CandidateStatus.RUNNING,
    ),
    Seed(
        "gamma-BASELINE",
        metrics={"acc": 0.7},
        params={"opt": "Adam"},
        tags={"team": "nlp"},
        status=CandidateStatus.FAILED,
    ),
    Seed(
        "delta",
        metrics={"acc": math.nan, "loss": 0.3},
        params={"opt": "adamw"},
        status=CandidateStatus.KILLED,
    ),
    Seed(
        "epsilon",
        metrics={"loss": 0.1},
        tags={"team": "ops"},
        status=CandidateStatus.FINISHED,
    ),
    Seed(
        "zeta",
        metrics={"acc": 0.5, "loss": 0.25},
        params={"opt": "adam"},
        status=CandidateStatus.FINISHED,
        promote=True,
    ),
    # Deleted: it matches many of the filters below, and must never be listed.
    Seed(
        "eta-deleted",
        metrics={"acc": 0.95, "loss": 0.05},
        params={"opt": "adam", "lr": "0.1"},
        tags={"team": "Vision"},
        status=CandidateStatus.FINISHED,
        deleted=True,
    ),
]
A, B, C, D, E, F = "Alpha-Baseline", "beta-run", "gamma-BASELINE", "delta", "epsilon", "zeta"


def metric(name: str, op: str, value: float) -> dict[str, Any]:
    return {"name": name, "op": op, "value": value}


def text(name: str, op: str, value: str | list[str]) -> dict[str, Any]:
    if isinstance(value, list):
        return {"name": name, "op": op, "values": value}
    return {"name": name, "op": op, "value": value}


async def mismatches(
    api: GraphQLApi, cases: Sequence[tuple[dict[str, Any], list[str]]]
) -> dict[str, tuple[list[str], list[str]]]:
    """For each (filter, expected names) case whose answer differs: (expected, got).
    Names are compared sorted: the order is a matter of the sort tests."""
    wrong = {}
    for candidate_filter, expected in cases:
        got = sorted(await names(api, FILTER_MODEL, filter=candidate_filter, first=100))
        if got != sorted(expected):
            wrong[repr(candidate_filter)] = (sorted(expected), got)
    return wrong


async def test_metric_conditions_compare_the_latest_value_nan_only_matches_ne(
    api: GraphQLApi,
) -> None:
    await seed(api, FILTER_MODEL, FILTER_SEEDS)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"metrics": [metric("acc", "GT", 0.5)]}, [A, C]),
        ({"metrics": [metric("acc", "GTE", 0.5)]}, [A, B, C, F]),
        # Alpha-Baseline logged 0.1 first; only its latest value (0.9) counts.
        ({"metrics": [metric("acc", "LT", 0.7)]}, [B, F]),
        ({"metrics": [metric("acc", "LT", 0.2)]}, []),
        ({"metrics": [metric("acc", "LTE", 0.7)]}, [B, C, F]),
        ({"metrics": [metric("acc", "EQ", 0.5)]}, [B, F]),
        # NaN is unequal to everything; epsilon, lacking acc, never matches.
        ({"metrics": [metric("acc", "NE", 0.5)]}, [A, C, D]),
        ({"metrics": [metric("loss", "EQ", 0.3)]}, [D]),
        ({"metrics": [metric("loss", "LTE", 0.3)]}, [A, D, E, F]),
        ({"metrics": [metric("acc", "GTE", 0.5), metric("loss", "LT", 0.3)]}, [A, F]),
        ({"metrics": [metric("acc", "GT", 0.0), metric("acc", "LT", 0.8)]}, [B, C, F]),
        ({"metrics": [metric("missing", "NE", 0.0)]}, []),
        ({"metrics": [metric("missing", "LT", 1e300)]}, []),
    ]

    assert await mismatches(api, cases) == {}


async def test_param_and_tag_conditions_eq_ne_like_ilike_in(api: GraphQLApi) -> None:
    await seed(api, FILTER_MODEL, FILTER_SEEDS)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"params": [text("opt", "EQ", "adam")]}, [A, F]),
        # Candidates without the param do not match NE (as in MLflow's searches).
        ({"params": [text("opt", "NE", "adam")]}, [B, C, D]),
        # LIKE is case-sensitive, ILIKE is not; `%` and `_` are wildcards.
        ({"params": [text("opt", "LIKE", "adam%")]}, [A, D, F]),
        ({"params": [text("opt", "LIKE", "_dam")]}, [A, C, F]),
        ({"params": [text("opt", "LIKE", "A%")]}, [C]),
        ({"params": [text("opt", "ILIKE", "ADAM%")]}, [A, C, D, F]),
        ({"params": [text("opt", "IN", ["sgd", "Adam"])]}, [B, C]),
        ({"params": [text("lr", "EQ", "0.1")]}, [A]),
        ({"params": [text("opt", "ILIKE", "adam"), text("lr", "EQ", "0.1")]}, [A]),
        ({"params": [text("missing", "NE", "x")]}, []),
        ({"tags": [text("team", "EQ", "vision")]}, [B]),
        ({"tags": [text("team", "NE", "vision")]}, [A, C, E]),
        ({"tags": [text("team", "LIKE", "Vis%")]}, [A]),
        ({"tags": [text("team", "ILIKE", "vis%")]}, [A, B]),
        ({"tags": [text("team", "IN", ["nlp", "ops"])]}, [C, E]),
        ({"tags": [text("team", "ILIKE", "VISION")], "params": [text("opt", "EQ", "sgd")]}, [B]),
    ]

    assert await mismatches(api, cases) == {}


async def test_status_name_and_version_conditions(api: GraphQLApi) -> None:
    await seed(api, FILTER_MODEL, FILTER_SEEDS)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"status": ["FINISHED", "FAILED"]}, [A, C, E, F]),
        ({"status": ["RUNNING"]}, [B]),
        ({"status": ["KILLED"]}, [D]),
        ({"status": ["SCHEDULED"]}, []),
        ({"nameContains": "baseline"}, [A, C]),
        ({"nameContains": "ET"}, [B, F]),
        ({"nameContains": "nothing-like-it"}, []),
        ({"hasVersion": True}, [F]),
        ({"hasVersion": False}, [A, B, C, D, E]),
        ({"hasVersion": False, "status": ["FINISHED"]}, [A, E]),
        ({}, [A, B, C, D, E, F]),
    ]

    assert await mismatches(api, cases) == {}


async def test_query_uses_the_mlflow_grammar_and_ands_with_structured_filters(
    api: GraphQLApi,
) -> None:
    await seed(api, FILTER_MODEL, FILTER_SEEDS)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"query": "metrics.acc > 0.6 and params.opt = 'adam'"}, [A]),
        ({"query": "metrics.acc >= 0.5 AND params.opt = 'adam'"}, [A, F]),
        ({"query": "metrics.acc != 0.5"}, [A, C, D]),
        ({"query": "params.opt LIKE 'adam%'"}, [A, D, F]),
        ({"query": "params.opt != 'adam'"}, [B, C, D]),
        ({"query": "tags.team ILIKE 'vision'"}, [A, B]),
        ({"query": "attributes.status = 'FINISHED'"}, [A, E, F]),
        ({"query": "attributes.status IN ('RUNNING', 'KILLED')"}, [B, D]),
        ({"query": ""}, [A, B, C, D, E, F]),
        ({"query": "params.opt = 'adam'", "hasVersion": False}, [A]),
        (
            {"query": "metrics.acc >= 0.5", "params": [text("opt", "ILIKE", "adam")]},
            [A, C, F],
        ),
        (
            {
                "query": "metrics.loss < 0.4",
                "status": ["FINISHED"],
                "nameContains": "A",
            },
            [A, F],
        ),
        (
            # delta's NaN acc is not > 0.
            {"query": "metrics.acc > 0", "metrics": [metric("loss", "GT", 0.21)]},
            [B, F],
        ),
    ]

    assert await mismatches(api, cases) == {}


async def refusal(api: GraphQLApi, variables: dict[str, Any]) -> tuple[list[str], str]:
    """The codes of the errors a request got, and the argument the first one names."""
    codes, field_name = await api.refusal(CANDIDATES, variables)
    return codes, str(field_name).split(".")[0]


async def test_a_bad_filter_or_order_is_a_validation_error_not_a_server_error(
    api: GraphQLApi,
) -> None:
    await seed(api, FILTER_MODEL, FILTER_SEEDS[:2])
    bad_filters = {
        "query-bad-operator": {"query": "metrics.acc >>> 1"},
        "query-or": {"query": "metrics.acc > 1 or params.opt = 'x'"},
        "query-unfinished": {"query": "metrics.acc > "},
        "in-without-values": {"params": [{"name": "opt", "op": "IN"}]},
        "eq-without-value": {"tags": [{"name": "team", "op": "EQ", "values": ["a"]}]},
    }
    bad_orders = {
        "metric-sort-without-key": {"field": "METRIC", "direction": "DESC"},
        "param-sort-without-key": {"field": "PARAM", "direction": "ASC"},
    }
    base = {"path": api.project_path, "model": FILTER_MODEL}

    outcomes = {}
    for case, candidate_filter in bad_filters.items():
        outcomes[case] = await refusal(api, {**base, "filter": candidate_filter})
    for case, order_by in bad_orders.items():
        outcomes[case] = await refusal(api, {**base, "orderBy": order_by})

    assert outcomes == {
        **{case: (["VALIDATION_ERROR"], "filter") for case in bad_filters},
        **{case: (["VALIDATION_ERROR"], "orderBy") for case in bad_orders},
    }


# --- order --------------------------------------------------------------------------------


async def test_metric_order_puts_ties_by_iid_then_nan_then_missing_in_both_directions(
    api: GraphQLApi,
) -> None:
    await seed(
        api,
        "ranked",
        [
            Seed("n1", metrics={"score": 0.5}),
            Seed("n2", metrics={"score": math.inf}),
            Seed("n3", metrics={"score": 0.5}),
            Seed("n4", metrics={"score": math.nan}),
            Seed("n5", metrics={"other": 1.0}),
            Seed("n6", metrics={"score": -math.inf}),
            # Logged 5.0 first: only the latest value, 1.0, decides.
            Seed("n7", metrics={"score": [5.0, 1.0]}),
            Seed("n8", metrics={"score": math.nan}),
            Seed("n9"),
            Seed("n10", metrics={"score": -2.5}),
        ],
    )

    ascending = await names(api, "ranked", orderBy=order("METRIC", "ASC", "score"))
    descending = await names(api, "ranked", orderBy=order("METRIC", "DESC", "score"))

    assert ascending == ["n6", "n10", "n1", "n3", "n7", "n2", "n4", "n8", "n5", "n9"]
    assert descending == ["n2", "n7", "n1", "n3", "n10", "n6", "n4", "n8", "n5", "n9"]


async def test_param_order_is_by_code_point_with_missing_last_in_both_directions(
    api: GraphQLApi,
) -> None:
    await seed(
        api,
        "by-param",
        [
            Seed("p1", params={"opt": "b"}),
            Seed("p2", params={"opt": "a"}),
            Seed("p3", params={"lr": "0.1"}),
            Seed("p4", params={"opt": "B"}),
            Seed("p5", params={"opt": "a"}),
            Seed("p6", params={"opt": "ä"}),
            Seed("p7", params={"opt": "10"}),
            Seed("p8", params={"opt": "9"}),
        ],
    )

    ascending = await names(api, "by-param", orderBy=order("PARAM", "ASC", "opt"))
    descending = await names(api, "by-param", orderBy=order("PARAM", "DESC", "opt"))

    assert ascending == ["p7", "p8", "p4", "p2", "p5", "p1", "p6", "p3"]
    assert descending == ["p6", "p1", "p2", "p5", "p4", "p8", "p7", "p3"]


async def test_name_order_breaks_ties_by_iid_ascending(api: GraphQLApi) -> None:
    created = await seed(
        api,
        "by-name",
        [Seed("delta"), Seed("alpha"), Seed("charlie"), Seed("alpha"), Seed("bravo")],
    )
    delta, alpha_1, charlie, alpha_2, bravo = created

    ascending = await iids(api, "by-name", orderBy=order("NAME", "ASC"))
    descending = await iids(api, "by-name", orderBy=order("NAME", "DESC"))

    assert alpha_1 < alpha_2
    assert ascending == [alpha_1, alpha_2, bravo, charlie, delta]
    assert descending == [delta, charlie, bravo, alpha_1, alpha_2]


async def test_created_at_order_is_the_start_time_and_the_default_is_newest_first(
    api: GraphQLApi,
) -> None:
    await seed(
        api,
        "by-start",
        [
            Seed("s1", start_time=T0 + 3000),
            Seed("s2", start_time=T0 + 1000),
            Seed("s3", start_time=T0 + 2000),
            Seed("s4", start_time=T0 + 1000),
        ],
    )

    ascending = await connection(api, "by-start", orderBy=order("CREATED_AT", "ASC"))
    descending = await names(api, "by-start", orderBy=order("CREATED_AT", "DESC"))
    default = await names(api, "by-start")

    assert [node["name"] for node in edges_of(ascending)] == ["s2", "s4", "s3", "s1"]
    assert descending == ["s1", "s3", "s2", "s4"]
    assert default == descending
    start_times = [dt.datetime.fromisoformat(node["startTime"]) for node in edges_of(ascending)]
    assert start_times == [
        dt.datetime.fromtimestamp((T0 + offset) / 1000, dt.UTC)
        for offset in (1000, 1000, 2000, 3000)
    ]


# --- pagination ---------------------------------------------------------------------------

PAGED = "paged"


def paged_scores() -> list[float | None]:
    """45 scores in a shuffled creation order: ties, both infinities, NaN, and missing."""
    scores: list[float | None] = [(index % 7) / 10 for index in range(30)]
    scores += [math.inf, -math.inf] + [math.nan] * 5 + [None] * 8
    random.Random(7).shuffle(scores)
    return scores


def score_seed(name: str, score: float | None) -> Seed:
    return Seed(name, metrics={} if score is None else {"score": score})


async def seed_paged(api: GraphQLApi) -> dict[int, float | None]:
    scores = paged_scores()
    created = await seed(
        api, PAGED, [score_seed(f"r{index:02d}", score) for index, score in enumerate(scores)]
    )
    return dict(zip(created, scores, strict=True))


def metric_order(scores: Mapping[int, float | None], *, descending: bool) -> list[int]:
    """The contract's order: values in the direction, then NaN, then missing; ties by iid."""

    def key(iid: int) -> tuple[int, float, int]:
        value = scores[iid]
        if value is None:
            return (2, 0.0, iid)
        if math.isnan(value):
            return (1, 0.0, iid)
        return (0, -value if descending else value, iid)

    return sorted(scores, key=key)


async def forward_pages(
    api: GraphQLApi, order_by: dict[str, Any], size: int, **arguments: Any
) -> list[dict[str, Any]]:
    pages = []
    after = None
    while True:
        page = await connection(api, PAGED, orderBy=order_by, first=size, after=after, **arguments)
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 100, "paging does not end"


def check_page_info(page: dict[str, Any]) -> None:
    edges = page["edges"]
    assert edges, page
    assert page["pageInfo"]["startCursor"] == edges[0]["cursor"]
    assert page["pageInfo"]["endCursor"] == edges[-1]["cursor"]


@pytest.mark.parametrize("direction, size", [("DESC", 7), ("ASC", 4)])
async def test_forward_pages_under_a_metric_sort_list_everyone_once_in_the_big_page_order(
    direction: str, size: int, api: GraphQLApi
) -> None:
    scores = await seed_paged(api)
    order_by = order("METRIC", direction, "score")

    big = await connection(api, PAGED, orderBy=order_by, first=100)
    default_size = await connection(api, PAGED, orderBy=order_by)
    pages = await forward_pages(api, order_by, size)

    expected = metric_order(scores, descending=direction == "DESC")
    assert [node["iid"] for node in edges_of(big)] == expected
    assert big["totalCount"] == 45
    assert big["pageInfo"]["hasNextPage"] is False
    assert big["pageInfo"]["hasPreviousPage"] is False
    assert [node["iid"] for node in edges_of(default_size)] == expected[:20]
    assert default_size["pageInfo"]["hasNextPage"] is True

    paged = [node["iid"] for page in pages for node in edges_of(page)]
    assert paged == expected
    assert [len(page["edges"]) for page in pages] == [
        min(size, 45 - start) for start in range(0, 45, size)
    ]
    assert [page["totalCount"] for page in pages] == [45] * len(pages)
    assert pages[0]["pageInfo"]["hasPreviousPage"] is False
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True] * (len(pages) - 1) + [
        False
    ]
    for page in pages:
        check_page_info(page)
    # Every node keeps its id and cursor however it is reached.
    big_cursors = {edge["node"]["id"]: edge["cursor"] for edge in big["edges"]}
    assert len(big_cursors) == 45
    paged_ids = [edge["node"]["id"] for page in pages for edge in page["edges"]]
    assert paged_ids == [edge["node"]["id"] for edge in big["edges"]]


async def test_backward_pages_give_the_same_order(api: GraphQLApi) -> None:
    scores = await seed_paged(api)
    order_by = order("METRIC", "DESC", "score")

    pages = []
    before = None
    while True:
        page = await connection(api, PAGED, orderBy=order_by, last=6, before=before)
        pages.append(page)
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
        assert len(pages) < 100, "paging does not end"

    backwards = [node["iid"] for page in reversed(pages) for node in edges_of(page)]
    assert backwards == metric_order(scores, descending=True)
    assert [len(page["edges"]) for page in pages] == [6] * 7 + [3]
    assert pages[0]["pageInfo"]["hasNextPage"] is False
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [True] * 7 + [False]
    assert [page["totalCount"] for page in pages] == [45] * 8
    for page in pages:
        check_page_info(page)


async def test_a_page_before_a_cursor_ends_right_before_it(api: GraphQLApi) -> None:
    scores = await seed_paged(api)
    order_by = order("METRIC", "ASC", "score")
    expected = metric_order(scores, descending=False)
    big = await connection(api, PAGED, orderBy=order_by, first=100)
    cursor_of_20th = big["edges"][19]["cursor"]

    before = await connection(api, PAGED, orderBy=order_by, last=5, before=cursor_of_20th)
    after = await connection(api, PAGED, orderBy=order_by, first=5, after=cursor_of_20th)

    assert [node["iid"] for node in edges_of(before)] == expected[14:19]
    assert [node["iid"] for node in edges_of(after)] == expected[20:25]
    assert before["pageInfo"]["hasPreviousPage"] is True
    assert after["pageInfo"]["hasNextPage"] is True


async def test_total_count_is_the_filtered_count_and_paging_keeps_the_filter(
    api: GraphQLApi,
) -> None:
    scores = await seed_paged(api)
    candidate_filter = {"metrics": [metric("score", "GTE", 0.3)]}
    order_by = order("METRIC", "DESC", "score")

    pages = await forward_pages(api, order_by, 5, filter=candidate_filter)

    matching = {
        iid: score
        for iid, score in scores.items()
        if score is not None and not math.isnan(score) and score >= 0.3
    }
    assert len(matching) == 17
    assert [node["iid"] for page in pages for node in edges_of(page)] == metric_order(
        matching, descending=True
    )
    assert {page["totalCount"] for page in pages} == {17}


async def test_continuing_after_a_cursor_ignores_rows_added_before_it(api: GraphQLApi) -> None:
    scores = await seed_paged(api)
    order_by = order("METRIC", "DESC", "score")
    first_page = await connection(api, PAGED, orderBy=order_by, first=10)
    original = metric_order(scores, descending=True)
    assert [node["iid"] for node in edges_of(first_page)] == original[:10]
    cursor_row = original[9]

    # One row sorting before the cursor, one tying with the cursor's row (a later iid, so
    # after it), one after everything that has a value.
    added = await seed(
        api,
        PAGED,
        [
            score_seed("new-top", 100.0),
            score_seed("new-tie", scores[cursor_row]),
            score_seed("new-nan", math.nan),
        ],
    )
    scores.update(zip(added, [100.0, scores[cursor_row], math.nan], strict=True))
    rest = []
    after = first_page["pageInfo"]["endCursor"]
    while True:
        page = await connection(api, PAGED, orderBy=order_by, first=10, after=after)
        assert page["totalCount"] == 48
        rest += [node["iid"] for node in edges_of(page)]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    now = metric_order(scores, descending=True)
    assert rest == now[now.index(cursor_row) + 1 :]
    assert [iid for iid in rest if iid not in added] == original[10:]
    assert added[0] not in rest
    assert added[1] in rest
    assert added[2] in rest


async def test_oversized_pages_and_unknown_cursors_are_refused(api: GraphQLApi) -> None:
    await seed(api, PAGED, [score_seed("one", 1.0), score_seed("two", 2.0)])
    base = {"path": api.project_path, "model": PAGED, "orderBy": order("METRIC", "DESC", "score")}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "first-over-1000": ({"first": 1001}, "first"),
        "last-over-1000": ({"last": 1001}, "last"),
        "garbage-after": ({"first": 5, "after": "garbage"}, "after"),
        "garbage-before": ({"last": 5, "before": "Zm9vYmFy"}, "before"),
        "cursor-of-nothing": ({"first": 5, "after": "eyJ4IjogMX0="}, "after"),
    }

    outcomes = {}
    for case, (arguments, _) in cases.items():
        outcomes[case] = await refusal(api, {**base, **arguments})

    assert outcomes == {
        case: (["VALIDATION_ERROR"], field_name) for case, (_, field_name) in cases.items()
    }


async def test_a_page_of_100_is_allowed(api: GraphQLApi) -> None:
    await seed(api, PAGED, [score_seed(f"r{index:03d}", float(index)) for index in range(105)])

    page = await connection(api, PAGED, orderBy=order("METRIC", "ASC", "score"), first=100)

    assert [node["name"] for node in edges_of(page)] == [f"r{index:03d}" for index in range(100)]
    assert page["totalCount"] == 105
    assert page["pageInfo"]["hasNextPage"] is True


# --- metrics of a candidate ---------------------------------------------------------------

METRICS = """
query($path: String!, $model: String!, $names: [String!], $first: Int, $after: String,
      $last: Int, $before: String) {
  project(path: $path) {
    model(name: $model) {
      candidates(first: 1) {
        edges {
          node {
            all: metrics { name value kind step timestamp }
            some: metrics(names: $names) { name value kind step }
            acc: metric(name: "acc") { name value kind step timestamp }
            f1: metric(name: "f1") { value kind }
            loss: metric(name: "loss") { value kind step timestamp }
            missing: metric(name: "missing") { value kind }
            history: metricHistory(
              name: "loss", first: $first, after: $after, last: $last, before: $before
            ) {
              totalCount
              pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
              edges { cursor node { name value kind step timestamp } }
            }
          }
        }
      }
    }
  }
}
"""


def ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


async def seed_metric_history(api: GraphQLApi) -> None:
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session, project=project, display_name="history", actor=OPERATOR
        )
        candidate = await candidates.create_candidate(
            session, model=model, name="h", actor=OPERATOR
        )
        loss = [
            (0, 0, 1.0),
            (1, 1, math.nan),
            (2, 2, math.inf),
            (3, 3, 0.5),
            # The same step twice: by timestamp, whatever order they arrive in.
            (4, 5, -math.inf),
            (4, 4, 0.25),
        ]
        await candidates.log_batch(
            session,
            candidate=candidate,
            metrics=[
                MetricPoint("loss", value, timestamp=T0 + offset, step=step)
                for step, offset, value in loss
            ]
            + [
                MetricPoint("acc", 0.75, timestamp=T0 + 10, step=7),
                MetricPoint("f1", 0.1, timestamp=T0, step=0),
                MetricPoint("f1", math.nan, timestamp=T0 + 1, step=1),
            ],
            actor=OPERATOR,
        )


async def metric_data(api: GraphQLApi, **variables: Any) -> dict[str, Any]:
    found = await api.data(
        METRICS,
        {"path": api.project_path, "model": "history", "names": ["loss", "acc"], **variables},
    )
    [node] = edges_of(found["project"]["model"]["candidates"])
    result: dict[str, Any] = node
    return result


def history_values(page: dict[str, Any]) -> list[tuple[int, float | None, str]]:
    return [(node["step"], node["value"], node["kind"]) for node in edges_of(page)]


async def test_latest_metrics_by_name_with_nan_and_infinity_as_null_values(
    api: GraphQLApi,
) -> None:
    await seed_metric_history(api)

    node = await metric_data(api, first=2)

    assert [(m["name"], m["value"], m["kind"], m["step"]) for m in node["all"]] == [
        ("acc", 0.75, "FINITE", 7),
        ("f1", None, "NAN", 1),
        ("loss", None, "NEGATIVE_INFINITY", 4),
    ]
    assert [m["name"] for m in node["some"]] == ["acc", "loss"]
    assert node["acc"]["value"] == 0.75
    assert node["acc"]["kind"] == "FINITE"
    assert dt.datetime.fromisoformat(node["acc"]["timestamp"]) == ms(T0 + 10)
    assert node["f1"] == {"value": None, "kind": "NAN"}
    assert node["loss"]["kind"] == "NEGATIVE_INFINITY"
    assert node["loss"]["value"] is None
    assert dt.datetime.fromisoformat(node["loss"]["timestamp"]) == ms(T0 + 5)
    assert node["missing"] is None


async def test_metric_history_pages_by_step_then_timestamp_in_both_directions(
    api: GraphQLApi,
) -> None:
    await seed_metric_history(api)

    pages = []
    after = None
    while True:
        page = (await metric_data(api, first=2, after=after))["history"]
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 10
    last_two = (await metric_data(api, last=2))["history"]
    before_last_two = (await metric_data(api, last=3, before=last_two["pageInfo"]["startCursor"]))[
        "history"
    ]

    assert [history_values(page) for page in pages] == [
        [(0, 1.0, "FINITE"), (1, None, "NAN")],
        [(2, None, "POSITIVE_INFINITY"), (3, 0.5, "FINITE")],
        [(4, 0.25, "FINITE"), (4, None, "NEGATIVE_INFINITY")],
    ]
    assert [page["totalCount"] for page in pages] == [6, 6, 6]
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True, True, False]
    assert pages[0]["pageInfo"]["hasPreviousPage"] is False
    timestamps = [
        dt.datetime.fromisoformat(node["timestamp"]) for page in pages for node in edges_of(page)
    ]
    assert timestamps == [ms(T0 + offset) for offset in (0, 1, 2, 3, 4, 5)]
    assert {node["name"] for page in pages for node in edges_of(page)} == {"loss"}
    assert history_values(last_two) == [(4, 0.25, "FINITE"), (4, None, "NEGATIVE_INFINITY")]
    assert last_two["pageInfo"]["hasPreviousPage"] is True
    assert history_values(before_last_two) == [
        (1, None, "NAN"),
        (2, None, "POSITIVE_INFINITY"),
        (3, 0.5, "FINITE"),
    ]
    assert before_last_two["pageInfo"]["hasPreviousPage"] is True


async def test_metric_history_refuses_a_page_over_1000(api: GraphQLApi) -> None:
    await seed_metric_history(api)

    refused = await api.refusal(
        METRICS, {"path": api.project_path, "model": "history", "first": 1001}
    )

    assert refused == (["VALIDATION_ERROR"], "first")


# --- deleted candidates -------------------------------------------------------------------


async def test_deleted_candidates_are_not_listed_counted_or_matched(api: GraphQLApi) -> None:
    await seed(
        api,
        "pruned",
        [
            Seed("kept-1", metrics={"score": 1.0}, params={"opt": "adam"}),
            Seed("gone", metrics={"score": 2.0}, params={"opt": "adam"}, deleted=True),
            Seed("kept-2", metrics={"score": 3.0}, params={"opt": "adam"}),
        ],
    )

    listed = await connection(api, "pruned", orderBy=order("METRIC", "DESC", "score"))
    by_name = await names(api, "pruned", filter={"nameContains": "gone"})
    by_param = await names(
        api, "pruned", filter={"params": [text("opt", "EQ", "adam")]}, orderBy=order("NAME", "ASC")
    )
    by_query = await names(api, "pruned", filter={"query": "metrics.score = 2"})

    assert [node["name"] for node in edges_of(listed)] == ["kept-2", "kept-1"]
    assert listed["totalCount"] == 2
    assert by_name == []
    assert by_param == ["kept-1", "kept-2"]
    assert by_query == []
