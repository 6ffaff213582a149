"""What charts and column choosers read over GraphQL, on SQLite and PostgreSQL:
`Model.candidateKeys` (the names logged through the mlflow client and GraphQL, one
model's apart from another's, kept after their candidates are deleted, backfilled by
migration 0010, read without touching a candidate's rows) and
`Candidate.metricHistories` (the points MLflow's get-history-bulk-interval keeps, NaN
and infinities as MLflow writes them, several candidates through `nodes(ids)` in one
statement, and a refusal on the field for asking too much, alone or together)."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from strawberry.relay import to_base64

from app import migrations
from app.db import Database
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from tests.clients import bearer
from tests.graphql_support import GraphQLApi, graphql_api
from tests.live_server import LiveServer
from tests.statements import recorded

KEYS = """
query($path: String!, $name: String!) {
  project(path: $path) { model(name: $name) { candidateKeys { metrics params tags } } }
}
"""

SERIES = (
    "metricHistories(names: $names, maxPoints: $maxPoints, minStep: $minStep, "
    "maxStep: $maxStep) { name steps values timestamps }"
)

COMPARISON = f"""
query($ids: [ID!]!, $names: [String!]!, $maxPoints: Int!, $minStep: Long, $maxStep: Long) {{
  nodes(ids: $ids) {{ ... on Candidate {{ eid {SERIES} }} }}
}}
"""


def _keys(server: LiveServer, model: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = server.ask(KEYS, path="default", name=model)["project"]["model"][
        "candidateKeys"
    ]
    return found


def _candidate_ids(server: LiveServer, model: str) -> dict[str, str]:
    """The global id of each candidate of a model, by MLflow run id."""
    document = """
    query($name: String!) { project(path: "default") { model(name: $name) {
      candidates(first: 100) { edges { node { id eid } } } } } }
    """
    edges = server.ask(document, name=model)["project"]["model"]["candidates"]["edges"]
    return {edge["node"]["eid"]: edge["node"]["id"] for edge in edges}


def test_candidate_keys_are_the_names_logged_through_mlflow_and_graphql_and_outlive_deletion(
    server: LiveServer, client: MlflowClient
) -> None:
    name, other_name = f"keys_{uuid.uuid4().hex[:8]}", f"other_{uuid.uuid4().hex[:8]}"
    experiment, other = client.create_experiment(name), client.create_experiment(other_name)
    run = client.create_run(experiment).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run,
        metrics=[
            Metric("loss", 0.5, now, 0),
            Metric("acc", 0.9, now, 0),
            Metric("loss", 0.4, now, 1),
        ],
        params=[Param("lr", "0.1")],
        tags=[RunTag("team", "vision"), RunTag("mlflow.note.content", "a system tag")],
    )
    client.log_metric(run, "f1", 0.7)
    client.log_param(run, "depth", "3")
    client.set_tag(run, "stage", "dev")
    other_run = client.create_run(other).info.run_id
    client.log_metric(other_run, "other_metric", 1.0)
    client.log_param(other_run, "other_param", "x")

    model_id = server.ask(
        'query($name: String!) { project(path: "default") { model(name: $name) { id } } }',
        name=name,
    )["project"]["model"]["id"]
    created = server.ask(
        """mutation($model: ID!) { candidateCreate(input: {modelId: $model,
          params: [{name: "batch", value: "32"}],
          metadata: [{name: "owner", value: "me"}, {name: "mlflow.source.type", value: "x"}]
        }) { ... on Candidate { id } } }""",
        model=model_id,
    )["candidateCreate"]["id"]
    server.ask(
        """mutation($id: ID!) { candidateLogMetrics(input: {id: $id,
          metrics: [{name: "val_loss", value: 1.5}]}) { ... on Candidate { id } } }""",
        id=created,
    )
    expected = {
        "metrics": ["acc", "f1", "loss", "val_loss"],
        "params": ["batch", "depth", "lr"],
        "tags": ["owner", "stage", "team"],
    }
    assert _keys(server, name) == expected
    assert _keys(server, other_name) == {
        "metrics": ["other_metric"],
        "params": ["other_param"],
        "tags": [],
    }

    # Deleted (restorable) and destroyed candidates leave their names: keys are a superset.
    client.delete_run(run)
    job = server.ask(
        "mutation($id: ID!) {"
        " candidateDelete(input: {id: $id}) { ... on JobStarted { job { id } } } }",
        id=created,
    )["candidateDelete"]["job"]["id"]
    deadline = time.monotonic() + 30
    status = ""
    while status != "SUCCEEDED" and time.monotonic() < deadline:
        status = server.ask("query($id: ID!) { job(id: $id) { status } }", id=job)["job"]["status"]
        time.sleep(0.05)
    assert status == "SUCCEEDED"
    assert _candidate_ids(server, name) == {}
    assert _keys(server, name) == expected


def test_metric_histories_keep_the_points_mlflows_bulk_interval_keeps(
    server: LiveServer, client: MlflowClient
) -> None:
    name = f"chart_{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name)).info.run_id
    losses = [
        Metric(
            "loss",
            math.nan if step == 37 else math.inf if step == 90 else step / 4,
            1000 + step,
            step,
        )
        for step in range(100)
    ]
    accuracies = [Metric("acc", step / 100, 5000 + step, step) for step in range(10, 20)]
    client.log_batch(run, metrics=losses + accuracies)
    candidate_id = _candidate_ids(server, name)[run]

    window = {"maxPoints": 7, "minStep": 10, "maxStep": 90}
    (node,) = server.ask(
        COMPARISON, ids=[candidate_id], names=["loss", "acc", "never_logged"], **window
    )["nodes"]
    loss, acc, never_logged = node["metricHistories"]

    # 81 values from step 10 to 90 cut to 7 evenly spaced, the first and last kept.
    assert loss == {
        "name": "loss",
        "steps": [10, 24, 37, 50, 64, 77, 90],
        "values": [2.5, 6.0, "NaN", 12.5, 16.0, 19.25, "Infinity"],
        "timestamps": [1010, 1024, 1037, 1050, 1064, 1077, 1090],
    }
    assert acc["steps"] == [10, 12, 13, 15, 16, 18, 19]
    assert never_logged == {"name": "never_logged", "steps": [], "values": [], "timestamps": []}
    for series in (loss, acc):
        response = httpx.get(
            f"{server.url}/api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={
                "run_ids": run,
                "metric_key": series["name"],
                "max_results": 7,
                "start_step": 10,
                "end_step": 90,
            },
            headers=bearer(server.admin_token),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        points = response.json()["metrics"]
        assert series["steps"] == [int(point["step"]) for point in points]
        assert series["values"] == [point["value"] for point in points]
        assert series["timestamps"] == [int(point["timestamp"]) for point in points]

    # Without bounds every step is in range; one point is the last alone, as MLflow's.
    (node,) = server.ask(COMPARISON, ids=[candidate_id], names=["loss"], maxPoints=1)["nodes"]
    assert node["metricHistories"][0]["steps"] == [99]
    (node,) = server.ask(COMPARISON, ids=[candidate_id], names=["loss"], maxPoints=1000)["nodes"]
    assert node["metricHistories"][0]["steps"] == list(range(100))


# --- In process: statement counts, refusals, the migration's backfill ------------------------


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as found:
        yield found


async def _seed_candidates(api: GraphQLApi, model_name: str, count: int) -> list[int]:
    """Candidates logging `loss` and `acc` at steps 0 to 199; returns their row ids."""
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session, project=project, display_name=model_name, actor=OPERATOR
        )
        ids = []
        for index in range(count):
            candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
            points = [
                MetricPoint(metric, float(index * 1000 + step), timestamp=step, step=step)
                for step in range(200)
                for metric in ("loss", "acc")
            ]
            await candidates.log_batch(session, candidate=candidate, metrics=points, actor=OPERATOR)
            ids.append(candidate.id)
    return ids


def _global_ids(ids: list[int]) -> list[str]:
    return [to_base64("Candidate", row_id) for row_id in ids]


async def test_a_comparison_of_five_candidates_reads_their_series_in_one_statement(
    api: GraphQLApi,
) -> None:
    ids = await _seed_candidates(api, "compared", 5)
    variables = {"names": ["loss", "acc"], "maxPoints": 5, "minStep": None, "maxStep": None}
    await api.data(COMPARISON, {"ids": _global_ids(ids[:1]), **variables})  # signs in
    counts = []
    for asked in (ids[:2], ids):
        with recorded() as seen:
            found = await api.data(COMPARISON, {"ids": _global_ids(asked), **variables})
        counts.append(len(seen))
        assert len([s for s in seen if "FROM candidate_metrics" in s]) == 1
    assert counts[0] == counts[1]
    # 200 values cut to 5: positions 0, 50, 100, 150 and 199.
    steps = [0, 50, 100, 150, 199]
    assert [node["metricHistories"] for node in found["nodes"]] == [
        [
            {
                "name": metric,
                "steps": steps,
                "values": [float(index * 1000 + step) for step in steps],
                "timestamps": steps,
            }
            for metric in ("loss", "acc")
        ]
        for index in range(5)
    ]


@pytest.mark.parametrize(
    ("names", "max_points", "min_step", "max_step", "field"),
    [
        (["loss"], 0, None, None, "maxPoints"),
        (["loss"], 10_001, None, None, "maxPoints"),
        ([f"m{index}" for index in range(21)], 10, None, None, "names"),
        (["loss"], 10, 5, 4, "minStep"),
    ],
)
async def test_asking_too_much_of_a_chart_is_a_validation_error_on_the_field(
    api: GraphQLApi,
    names: list[str],
    max_points: int,
    min_step: int | None,
    max_step: int | None,
    field: str,
) -> None:
    ids = await _seed_candidates(api, "bounded", 1)
    variables = {
        "ids": _global_ids(ids),
        "names": names,
        "maxPoints": max_points,
        "minStep": min_step,
        "maxStep": max_step,
    }
    body = await api.post(COMPARISON, variables)
    assert [
        (error["path"], error["extensions"]["code"], error["extensions"]["field"])
        for error in body["errors"]
    ] == [(["nodes", 0, "metricHistories"], "VALIDATION_ERROR", field)]


async def test_charts_asked_together_are_refused_beyond_a_million_values(
    api: GraphQLApi,
) -> None:
    [candidate_id] = _global_ids(await _seed_candidates(api, "many_charts", 1))
    variables = {"id": candidate_id, "names": [f"m{index}" for index in range(20)]}

    def charts(count: int) -> str:
        # Each alias asks other points, so none is answered from another: 20 x ~10,000.
        aliased = " ".join(
            f"c{points}: metricHistories(names: $names, maxPoints: {points}) {{ name }}"
            for points in range(10_000, 10_000 - count, -1)
        )
        return f"""query($id: ID!, $names: [String!]!) {{
          node(id: $id) {{ ... on Candidate {{ {aliased} }} }} }}"""

    body = await api.post(charts(6), variables)
    assert body["data"] == {"node": None}
    assert {
        (error["extensions"]["code"], error["extensions"]["field"]) for error in body["errors"]
    } == {("VALIDATION_ERROR", "maxPoints")}
    assert "at most 1,000,000 values" in body["errors"][0]["message"]
    assert "errors" not in await api.post(charts(5), variables)


async def test_candidate_keys_read_the_kept_names_alone(api: GraphQLApi) -> None:
    await _seed_candidates(api, "read_alone", 3)
    with recorded() as seen:
        found = await api.data(KEYS, {"path": api.project_path, "name": "read_alone"})
    assert found["project"]["model"]["candidateKeys"] == {
        "metrics": ["acc", "loss"],
        "params": [],
        "tags": [],
    }
    # No candidate table is read: not the candidates, nor their metrics, params or tags.
    assert [s for s in seen if re.search(r"\b(FROM|JOIN) candidate", s)] == []
    assert len([s for s in seen if "FROM model_candidate_keys" in s]) == 1


async def test_migration_0010_backfills_the_keys_of_existing_candidates(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            project = await projects.create_project(session, path="backfill")
            model = await models.create_model(
                session, project=project, display_name="Old", actor=OPERATOR
            )
            candidate = await candidates.create_candidate(
                session,
                model=model,
                metadata={"team": "a", "mlflow.user": "someone"},
                actor=OPERATOR,
            )
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=[MetricPoint("loss", 1.0, timestamp=1)],
                params={"lr": "0.1"},
                actor=OPERATOR,
            )
            model_id = model.id
    finally:
        await database.dispose()
    await asyncio.to_thread(migrations.downgrade, database_url, "0009")
    await asyncio.to_thread(migrations.upgrade, database_url)
    database = Database(database_url)
    try:
        async with database.session() as session:
            rows = await session.execute(
                sa.text(
                    "SELECT kind, name FROM model_candidate_keys WHERE model_id = :model"
                    " ORDER BY kind, name"
                ),
                {"model": model_id},
            )
            assert [tuple(row) for row in rows] == [
                ("metric", "loss"),
                ("param", "lr"),
                ("tag", "team"),
            ]
    finally:
        await database.dispose()


# --- Dense histories are cut by step, any other by numbering: the same points -----------------


async def _logged(
    database: Database, model_name: str, batches: list[list[MetricPoint]], project_path: str
) -> int:
    """A new candidate of a new model of the project that logged `batches` in turn, one
    transaction each; its row id."""
    async with database.session() as session:
        project = await projects.get_project(session, path=project_path)
        model = await models.create_model(
            session, project=project, display_name=model_name, actor=OPERATOR
        )
        candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    for batch in batches:
        async with database.session() as session:
            found = await candidates.get_candidates(session, ids=[candidate.id])
            await candidates.log_batch(
                session, candidate=found[candidate.id], metrics=batch, actor=OPERATOR
            )
    return candidate.id


async def _log(api: GraphQLApi, model_name: str, batches: list[list[MetricPoint]]) -> int:
    return await _logged(api.database, model_name, batches, api.project_path)


def _losses(steps: range | list[int], timestamp: int = 0) -> list[MetricPoint]:
    return [MetricPoint("loss", step / 10, timestamp=timestamp + step, step=step) for step in steps]


async def _dense_steps(database: Database, candidate_id: int) -> tuple[int | None, bool]:
    """(first_step, dense_steps) of the candidate's `loss`, as logging kept them."""
    async with database.session(read_only=True) as session:
        row = (
            await session.execute(
                sa.text(
                    "SELECT first_step, dense_steps FROM candidate_latest_metrics"
                    " WHERE candidate_id = :id AND name = 'loss'"
                ),
                {"id": candidate_id},
            )
        ).one()
    return row[0], bool(row[1])


async def _chart(
    api: GraphQLApi,
    candidate_id: int,
    max_points: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> list[tuple[int, float, int]]:
    """The (step, value, timestamp) points of the candidate's `loss` chart."""
    variables = {
        "ids": _global_ids([candidate_id]),
        "names": ["loss"],
        "maxPoints": max_points,
        "minStep": min_step,
        "maxStep": max_step,
    }
    (node,) = (await api.data(COMPARISON, variables))["nodes"]
    (series,) = node["metricHistories"]
    return list(zip(series["steps"], series["values"], series["timestamps"], strict=True))


async def test_a_dense_history_is_cut_by_step_into_the_points_numbering_keeps(
    api: GraphQLApi,
) -> None:
    # The same 1,000 points, logged in order (dense: read by step) and in reverse batches
    # (a batch before the last step: numbered).
    in_order = await _log(
        api, "in_order", [_losses(range(s, s + 100)) for s in range(0, 1000, 100)]
    )
    reversed_batches = await _log(
        api, "reversed", [_losses(range(s, s + 100)) for s in range(900, -1, -100)]
    )
    assert await _dense_steps(api.database, in_order) == (0, True)
    assert await _dense_steps(api.database, reversed_batches) == (0, False)

    def steps(points: list[tuple[int, float, int]]) -> list[int]:
        return [step for step, _, _ in points]

    assert steps(await _chart(api, in_order, 4)) == [0, 333, 666, 999]
    assert steps(await _chart(api, in_order, 1)) == [999]
    assert steps(await _chart(api, in_order, 4, 10, 20)) == [10, 14, 17, 20]
    assert steps(await _chart(api, in_order, 3, -50, 5)) == [0, 3, 5]
    assert steps(await _chart(api, in_order, 7, 995, 2000)) == [995, 996, 997, 998, 999]
    assert steps(await _chart(api, in_order, 5, 2000, 3000)) == []
    assert steps(await _chart(api, in_order, 10_000)) == list(range(1000))
    assert (await _chart(api, in_order, 3))[1] == (500, 50.0, 500)
    for window in [(1,), (2,), (4,), (999,), (1000,), (4, 10, 20), (3, -50, 5), (7, 1, 998)]:
        assert await _chart(api, in_order, *window) == await _chart(
            api, reversed_batches, *window
        ), window


async def test_sparse_and_repeated_steps_are_cut_by_numbering(api: GraphQLApi) -> None:
    sparse = await _log(api, "sparse", [_losses(range(0, 1000, 10))])
    # Each step twice, at two timestamps: (step, timestamp) order puts 100 + s first.
    repeated = await _log(api, "repeated", [_losses(range(10), 100) + _losses(range(10), 200)])
    # Dense until step 5 comes again at another time.
    broken = await _log(api, "broken", [_losses(range(10)), _losses([5], 1000)])
    # A batch sent twice (a client's retry) stores nothing new, but is no longer known dense.
    retried = await _log(api, "retried", [_losses(range(10)), _losses(range(10))])
    assert [
        await _dense_steps(api.database, found) for found in (sparse, repeated, broken, retried)
    ] == [
        (0, False),
        (0, False),
        (0, False),
        (0, False),
    ]

    assert [step for step, _, _ in await _chart(api, sparse, 4)] == [0, 330, 660, 990]
    assert await _chart(api, repeated, 3) == [(0, 0.0, 100), (5, 0.5, 105), (9, 0.9, 209)]
    assert [(step, time) for step, _, time in await _chart(api, repeated, 4, 3, 4)] == [
        (3, 103),
        (3, 203),
        (4, 104),
        (4, 204),
    ]
    assert [step for step, _, _ in await _chart(api, broken, 100)] == [
        0,
        1,
        2,
        3,
        4,
        5,
        5,
        6,
        7,
        8,
        9,
    ]
    assert [step for step, _, _ in await _chart(api, retried, 100)] == list(range(10))
    assert [step for step, _, _ in await _chart(api, retried, 4)] == [0, 3, 6, 9]


async def test_migration_0012_finds_which_existing_histories_are_dense(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            await projects.create_project(session, path="dense")
        dense = await _logged(
            database, "dense", [_losses(range(5)), _losses(range(5, 50))], "dense"
        )
        sparse = await _logged(database, "sparse", [_losses([0, 2, 4, 6])], "dense")
        ids = [dense, sparse]
        async with database.session(read_only=True) as session:
            charts = await candidates.sample_histories(
                session, candidate_ids=ids, names=["loss"], max_points=3
            )
    finally:
        await database.dispose()
    assert [point.step for point in charts[dense, "loss"]] == [0, 25, 49]
    assert [point.step for point in charts[sparse, "loss"]] == [0, 4, 6]
    await asyncio.to_thread(migrations.downgrade, database_url, "0011")
    await asyncio.to_thread(migrations.upgrade, database_url)
    database = Database(database_url)
    try:
        assert await _dense_steps(database, dense) == (0, True)
        assert await _dense_steps(database, sparse) == (0, False)
        async with database.session(read_only=True) as session:
            assert charts == await candidates.sample_histories(
                session, candidate_ids=ids, names=["loss"], max_points=3
            )
    finally:
        await database.dispose()
