"""What a frontend's column chooser and charts cost, on their own.

    .venv/bin/python -m bench.frontend_reads                        # SQLite
    .venv/bin/python -m bench.frontend_reads --database postgresql  # a throwaway PostgreSQL

Seeds a fresh database before serving it: a model of `--small` (100) candidates logging
3 params, 3 metrics and 2 tags each through the services; a model of `--large` (100,000)
candidates bulk-inserted as bench/seed.py writes them, with the names their logging
would have kept; and two models whose 2 candidates each log a `--steps` (100,000) point
`loss` history through the services in MLflow's batches of 1,000: at steps 0, 1, 2, ...
(dense: a chart reads its kept points by step) and at steps 0, 2, 4, ... (sparse: a
chart numbers every point). Then it times GraphQL requests to the app served in process
(no network: the figures are the server's work and its ASGI plumbing):
`Model.candidateKeys` of the small and the large model, and a chart of both candidates
of each chart model through `nodes(ids)` cut to `--points` (1,000) values per series.
Each figure is the median and the slowest of `--repeat` requests after one warm-up, in
ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from strawberry.relay import to_base64

from app import migrations
from app.db import Database
from app.models import Project
from app.services import auth, candidate_keys, candidates, models, projects, users
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from bench.seed import seed_candidates
from bench.shapes import search_run_values
from tests.clients import app_settings, serving
from tests.graphql_support import GraphQLApi
from tests.services import postgres_server

PROJECT = "bench"

KEYS = """
query($path: String!, $name: String!) {
  project(path: $path) { model(name: $name) { candidateKeys { metrics params tags } } }
}
"""

CHART = """
query($ids: [ID!]!, $points: Int!) {
  nodes(ids: $ids) { ... on Candidate {
    metricHistories(names: ["loss"], maxPoints: $points) { name steps values timestamps }
  } }
}
"""


async def _seed_small(database: Database, project: Project, count: int) -> None:
    async with database.session() as session:
        model = await models.create_model(
            session, project=project, display_name="keys_small", actor=OPERATOR
        )
        for index in range(count):
            candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=[
                    MetricPoint(metric, index / count, timestamp=index)
                    for metric in ("loss", "accuracy", "m0")
                ],
                params={"optimizer": "adam", "lr": str(index % 7), "batch_size": "32"},
                tags={"team": "vision", "mlflow.user": "bench"},
                actor=OPERATOR,
            )


async def _seed_large(database: Database, database_url: str, count: int) -> None:
    async with database.session() as session:
        project = await projects.get_project(session, path=PROJECT)
        model = await models.create_model(
            session, project=project, display_name="keys_large", actor=OPERATOR
        )
    await asyncio.to_thread(seed_candidates, database_url, model.name, count, PROJECT)
    params, metrics = search_run_values(0)
    async with database.session() as session:
        await candidate_keys.record(session, model_id=model.id, metrics=metrics, params=params)


async def _seed_chart(
    database: Database, project: Project, steps: int, *, stride: int = 1
) -> list[str]:
    """Two candidates with a `steps` long loss history, a point every `stride` steps;
    their global ids."""
    async with database.session() as session:
        model = await models.create_model(
            session, project=project, display_name=f"chart_{stride}", actor=OPERATOR
        )
        ids = [
            (await candidates.create_candidate(session, model=model, actor=OPERATOR)).id
            for _ in range(2)
        ]
    batch = candidates.MAX_METRICS_PER_BATCH
    for candidate_id in ids:
        for first in range(0, steps, batch):
            async with database.session() as session:
                found = await candidates.get_candidates(session, ids=[candidate_id])
                await candidates.log_batch(
                    session,
                    candidate=found[candidate_id],
                    metrics=[
                        MetricPoint("loss", 1 / (step + 1), timestamp=step, step=step * stride)
                        for step in range(first, min(steps, first + batch))
                    ],
                    actor=OPERATOR,
                )
    return [to_base64("Candidate", candidate_id) for candidate_id in ids]


async def _timed(
    api: GraphQLApi, requests: dict[str, tuple[str, dict[str, Any]]], repeat: int
) -> dict[str, str]:
    """The median and slowest of each request in ms, and the median CPU time this
    process spent on it (all of the server's work on SQLite, whose queries run in this
    process; a figure a busy machine inflates less than the elapsed time). The requests
    take turns, so a neighbour's load on the machine falls on all of them alike."""
    elapsed: dict[str, list[float]] = {label: [] for label in requests}
    cpu: dict[str, list[float]] = {label: [] for label in requests}
    for document, variables in requests.values():
        await api.data(document, variables)
    for _ in range(repeat):
        for label, (document, variables) in requests.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            await api.data(document, variables)
            elapsed[label].append((time.perf_counter() - start) * 1000)
            cpu[label].append((time.process_time() - start_cpu) * 1000)
    return {
        label: f"median {statistics.median(found):7.1f} ms, slowest {max(found):7.1f} ms, "
        f"cpu {statistics.median(cpu[label]):7.1f} ms"
        for label, found in elapsed.items()
    }


async def _measure(database_url: str, workdir: Path, options: argparse.Namespace) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url)
    database = Database(database_url)
    try:
        async with database.session() as session:
            admin = await users.create_user(session, username="root", is_admin=True)
            _, token = await auth.create_token(session, user=admin, name="bench")
            project = await projects.create_project(session, path=PROJECT, owner=admin)
        start = time.perf_counter()
        await _seed_small(database, project, options.small)
        await _seed_large(database, database_url, options.large)
        print(f"seeded {options.small:,} + {options.large:,} candidates", end=" ")
        print(f"in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        charts = {
            kind: await _seed_chart(database, project, options.steps, stride=stride)
            for kind, stride in (("dense", 1), ("sparse", 2))
        }
        print(f"seeded 2 x 2 x {options.steps:,} points in {time.perf_counter() - start:.1f} s")
        async with serving(app_settings(workdir, database_url)) as client:
            api = GraphQLApi(client=client, database=database, admin_token=token)
            await _report(api, charts, options)
    finally:
        await database.dispose()


async def _report(
    api: GraphQLApi, charts: dict[str, list[str]], options: argparse.Namespace
) -> None:
    requests: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, count in (("keys_small", options.small), ("keys_large", options.large)):
        variables: dict[str, Any] = {"path": PROJECT, "name": name}
        keys = (await api.data(KEYS, variables))["project"]["model"]["candidateKeys"]
        assert keys["params"] == ["batch_size", "lr", "optimizer"], keys
        requests[f"candidateKeys @ {count:>7,} candidates"] = (KEYS, variables)
    for kind, chart_ids in charts.items():
        variables = {"ids": chart_ids, "points": options.points}
        series = (await api.data(CHART, variables))["nodes"]
        sizes = [len(node["metricHistories"][0]["steps"]) for node in series]
        assert sizes == [min(options.points, options.steps)] * 2, sizes
        label = f"chart 2 x {options.steps:,} {kind} steps -> {options.points:,} points"
        requests[label] = (CHART, variables)
    for label, figure in (await _timed(api, requests, options.repeat)).items():
        print(f"{label}: {figure}")


@contextlib.contextmanager
def _database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_server(workdir) as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{workdir / 'frontend_reads.db'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="frontend-reads-") as directory:
        workdir = Path(directory)
        print(f"database: {options.database}")
        with _database(options.database, workdir) as url:
            asyncio.run(_measure(url, workdir, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
