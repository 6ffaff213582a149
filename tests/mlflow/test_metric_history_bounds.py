"""Metric history reads are bounded: get-history-bulk-interval answers each of at most 100
runs once with at most 2,500 evenly spaced values, chosen in the database, that keep the
first and the last (MLflow's documented behaviour); get-history pages through a long
history without losing or repeating a value."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.store.tracking.abstract_store import AbstractStore
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import InvalidValueError, NotFoundError
from app.models import Candidate, Model, Project
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from app.services.candidates import MAX_SAMPLED_POINTS, MAX_SAMPLED_RUNS, MetricPoint
from tests.live_server import LiveServer

BULK_INTERVAL = "/api/2.0/mlflow/metrics/get-history-bulk-interval"


async def log_points(
    session: AsyncSession, candidate: Candidate, points: Sequence[MetricPoint]
) -> None:
    for start in range(0, len(points), candidates.MAX_METRICS_PER_BATCH):
        batch = points[start : start + candidates.MAX_METRICS_PER_BATCH]
        await candidates.log_batch(session, candidate=candidate, metrics=batch, actor=OPERATOR)


def steps(count: int, *, name: str = "loss", first: int = 0) -> list[MetricPoint]:
    """One value per step, `first` .. `first + count - 1`."""
    return [
        MetricPoint(name=name, value=step / 10, timestamp=1_000 + step, step=step)
        for step in range(first, first + count)
    ]


@pytest.fixture
async def model(session: AsyncSession, project: Project) -> Model:
    return await models.create_model(
        session, project=project, display_name="Charts", actor=OPERATOR
    )


async def new_run(session: AsyncSession, model: Model, points: Sequence[MetricPoint]) -> str:
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    await log_points(session, candidate, points)
    return candidate.eid


async def sampled(
    session: AsyncSession, project: Project, eids: Sequence[str], **options: Any
) -> list[tuple[str, list[MetricPoint]]]:
    return await candidates.sample_metric_history(
        session, project=project, eids=eids, name="loss", **options
    )


# --- The service, on both databases -------------------------------------------------------


@pytest.mark.parametrize(("count", "wanted"), [(1000, 10), (1000, 7), (5000, 2500), (10, 3)])
async def test_sampling_keeps_evenly_spaced_steps_with_the_first_and_the_last(
    session: AsyncSession, project: Project, model: Model, count: int, wanted: int
) -> None:
    run = await new_run(session, model, steps(count))

    [(eid, points)] = await sampled(session, project, [run], max_points=wanted)

    kept = [point.step for point in points]
    assert eid == run
    assert kept == [math.ceil(index * (count - 1) / (wanted - 1)) for index in range(wanted)]
    assert (kept[0], kept[-1], len(kept)) == (0, count - 1, wanted)
    gaps = {after - before for before, after in itertools.pairwise(kept)}
    assert max(gaps) - min(gaps) <= 1
    # MLflow's reference sampling rounds where this takes the next row: never further apart.
    mlflow_kept = AbstractStore._evenly_spaced_indices(count, wanted)
    assert len(mlflow_kept) == wanted
    assert all(abs(ours - theirs) <= 1 for ours, theirs in zip(kept, mlflow_kept, strict=True))
    assert points[1] == MetricPoint(
        name="loss", value=kept[1] / 10, timestamp=1_000 + kept[1], step=kept[1]
    )


async def test_sampling_stays_within_the_step_range_and_keeps_its_ends(
    session: AsyncSession, project: Project, model: Model
) -> None:
    # Even steps only, so the range's ends (15, 401) fall between logged steps.
    run = await new_run(session, model, [p for p in steps(1000) if p.step % 2 == 0])

    [(_, points)] = await sampled(
        session, project, [run], max_points=5, start_step=15, end_step=401
    )

    # Logged steps 16, 18 .. 400 are 193 rows: rows 0, 48, 96, 144, 192 are kept.
    assert [point.step for point in points] == [16, 112, 208, 304, 400]


async def test_values_logged_at_one_step_are_sampled_by_time_not_returned_whole(
    session: AsyncSession, project: Project, model: Model
) -> None:
    # MLflow's log_metric without a step logs every value at step 0.
    same_step = [
        MetricPoint(name="loss", value=float(index), timestamp=5_000 + index, step=0)
        for index in range(3000)
    ]
    run = await new_run(session, model, same_step)

    [(_, points)] = await sampled(session, project, [run], max_points=4)

    assert [point.timestamp for point in points] == [5_000, 6_000, 7_000, 7_999]


async def test_one_point_is_the_last_and_short_histories_come_whole(
    session: AsyncSession, project: Project, model: Model
) -> None:
    long_run = await new_run(session, model, steps(50))
    short_run = await new_run(
        session,
        model,
        [*steps(3), MetricPoint(name="loss", value=math.nan, timestamp=9_999, step=3)],
    )
    silent_run = await new_run(session, model, steps(5, name="accuracy"))

    answer = await sampled(session, project, [long_run, short_run, silent_run], max_points=1)
    assert [(eid, [p.step for p in points]) for eid, points in answer] == [
        (long_run, [49]),
        (short_run, [3]),
        (silent_run, []),
    ]
    assert math.isnan(answer[1][1][0].value)

    [_, (_, whole), _] = await sampled(session, project, [long_run, short_run, silent_run])
    assert [point.step for point in whole] == [0, 1, 2, 3]


async def test_a_run_named_many_times_is_answered_once_in_the_order_first_named(
    session: AsyncSession, project: Project, model: Model
) -> None:
    first = await new_run(session, model, steps(20))
    second = await new_run(session, model, steps(20, first=100))

    answer = await sampled(
        session, project, [second] * 60 + [first] * 40, max_points=MAX_SAMPLED_POINTS
    )

    assert [(eid, len(points)) for eid, points in answer] == [(second, 20), (first, 20)]
    assert answer[0][1][0].step == 100


async def test_bad_sampling_requests_are_refused(
    session: AsyncSession, project: Project, model: Model
) -> None:
    run = await new_run(session, model, steps(3))
    refused: list[tuple[list[str], dict[str, int], str]] = [
        ([run] * (MAX_SAMPLED_RUNS + 1), {}, "run_ids"),
        ([run], {"max_points": 0}, "max_results"),
        ([run], {"max_points": MAX_SAMPLED_POINTS + 1}, "max_results"),
        ([run], {"start_step": 1}, "start_step"),
        ([run], {"start_step": 5, "end_step": 4}, "end_step"),
    ]
    for eids, options, field in refused:
        with pytest.raises(InvalidValueError) as error:
            await sampled(session, project, eids, **options)
        assert error.value.field == field, options

    other = await projects.create_project(session, path="elsewhere")
    for eids, target in [([run, "f" * 32], project), ([run], other)]:
        with pytest.raises(NotFoundError, match="not found"):
            await sampled(session, target, eids)


# --- MLflow's REST surface on a live server -----------------------------------------------


@pytest.fixture
def client(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


async def logged_run(server: LiveServer, points: Sequence[MetricPoint]) -> str:
    """A run of the default project with these points, written through the services."""
    database = Database(server.database_url)
    try:
        async with database.session() as session:
            project = await projects.get_default_project(session)
            model = await models.get_model(session, project=project, iid=0)
            return await new_run(session, model, points)
    finally:
        await database.dispose()


def get(server: LiveServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=60,
    )


async def test_bulk_interval_answers_a_run_named_100_times_once_and_evenly_sampled(
    server: LiveServer,
) -> None:
    run = await logged_run(server, steps(10_000))

    response = get(server, BULK_INTERVAL, run_ids=[run] * 100, metric_key="loss", max_results=100)

    assert response.status_code == 200, response.text
    metrics = response.json()["metrics"]
    assert {metric["run_id"] for metric in metrics} == {run}
    assert [metric["step"] for metric in metrics] == [
        math.ceil(index * 9_999 / 99) for index in range(100)
    ]
    assert metrics[-1] == {
        "key": "loss",
        "value": 999.9,
        "timestamp": 10_999,
        "step": 9_999,
        "run_id": run,
    }


async def test_bulk_interval_refuses_what_mlflow_refuses(server: LiveServer) -> None:
    run = await logged_run(server, steps(3))
    refused: list[dict[str, Any]] = [
        {"run_ids": [f"{index:032x}" for index in range(101)]},
        {"run_ids": [run], "max_results": 2501},
        {"run_ids": [run], "max_results": 0},
        {"run_ids": [run], "start_step": 2},
        {"run_ids": [run], "start_step": 2, "end_step": 1},
    ]
    for params in refused:
        response = get(server, BULK_INTERVAL, metric_key="loss", **params)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    missing = get(server, BULK_INTERVAL, metric_key="loss", run_ids=[run, "0" * 32])
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


async def test_get_history_pages_through_a_long_history(
    server: LiveServer, client: MlflowClient
) -> None:
    points = steps(2_500)
    run = await logged_run(server, points)

    pages: list[list[int]] = []
    token: str | None = None
    while True:
        params = {"run_id": run, "metric_key": "loss", "max_results": 1000}
        if token is not None:
            params["page_token"] = token
        response = get(server, "/api/2.0/mlflow/metrics/get-history", **params)
        assert response.status_code == 200, response.text
        pages.append([metric["step"] for metric in response.json()["metrics"]])
        token = response.json().get("next_page_token")
        if token is None:
            break
    assert [len(page) for page in pages] == [1000, 1000, 500]
    assert [step for page in pages for step in page] == list(range(2_500))
    # The client follows the tokens itself.
    assert [metric.step for metric in client.get_metric_history(run, "loss")] == list(range(2_500))

    too_many = get(
        server,
        "/api/2.0/mlflow/metrics/get-history",
        run_id=run,
        metric_key="loss",
        max_results=100_001,
    )
    assert (too_many.status_code, too_many.json()["error_code"]) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
