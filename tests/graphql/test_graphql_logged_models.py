"""A candidate's logged models over GraphQL, on both databases: the models its run logged,
oldest first, with their params, tags, files and every metric point logged for them (not
the run's unlinked ones, not deleted models); a page of candidates asking for them reads
the database a fixed number of times, whatever its size."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Candidate, LoggedModel, Model
from app.services import candidates, logged_models, models, packages, projects
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from app.storage.base import StoredObject
from tests.clients import jobs_settled
from tests.graphql_support import GraphQLApi, edges_of, graphql_api
from tests.statements import queries, recorded

CANDIDATES = """
query Candidates($path: String!, $first: Int!) {
  project(path: $path) {
    model(name: "tracked") {
      candidates(first: $first) {
        edges { node {
          name
          loggedModels {
            id name status statusMessage modelType createdAt updatedAt
            params { name value }
            tags { name value }
            metrics { name value kind step timestamp datasetName datasetDigest }
            files { path size sha256 downloadUrl }
          }
        } }
      }
    }
  }
}
"""

# 2023-11-14T22:13:20Z in MLflow's milliseconds.
T0 = 1_700_000_000_000


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def _model(api: GraphQLApi) -> Model:
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        return await models.create_model(
            session, project=project, display_name="Tracked", name="tracked", actor=OPERATOR
        )


async def _candidates(api: GraphQLApi) -> dict[str, list[dict[str, Any]]]:
    found = await api.data(CANDIDATES, {"path": api.project_path, "first": 100})
    nodes = edges_of(found["project"]["model"]["candidates"])
    return {node["name"]: node["loggedModels"] for node in nodes}


def _timestamps(row: LoggedModel) -> dict[str, str]:
    return {"createdAt": row.created_at.isoformat(), "updatedAt": row.updated_at.isoformat()}


async def test_a_candidate_shows_the_models_its_run_logged_with_their_metrics(
    api: GraphQLApi,
) -> None:
    model = await _model(api)
    async with api.database.session() as session:
        await candidates.create_candidate(session, model=model, name="plain", actor=OPERATOR)
        trained = await candidates.create_candidate(
            session, model=model, name="trained", actor=OPERATOR
        )
        first = await logged_models.create_logged_model(
            session,
            model=model,
            name="classifier",
            model_type="agent",
            source_candidate=trained,
            params={"C": "1.0", "penalty": "l2"},
            tags={"team": "vision"},
            actor=OPERATOR,
        )
        await logged_models.finalize_logged_model(
            session, logged_model=first, status_name="READY", actor=OPERATOR
        )
        package = await packages.logged_model_package(session, logged_model=first)
        for path, size in (("model.pkl", 2048), ("MLmodel", 312)):
            stored = StoredObject(key=f"objects/{path}", size=size, sha256=path[0] * 64)
            await packages.add_file(session, package=package, path=path, stored=stored)
        second = await logged_models.create_logged_model(
            session, model=model, name="regressor", source_candidate=trained, actor=OPERATOR
        )
        deleted = await logged_models.create_logged_model(
            session, model=model, name="discarded", source_candidate=trained, actor=OPERATOR
        )
        await logged_models.delete_logged_model(session, logged_model=deleted, actor=OPERATOR)
        await candidates.log_batch(
            session,
            candidate=trained,
            metrics=[
                MetricPoint("loss", 0.5, T0, 1, first.eid, "eval", "abc123"),
                MetricPoint("loss", 0.25, T0 + 1000, 2, first.eid, "eval", "abc123"),
                MetricPoint("diverged", math.nan, T0, 0, first.eid),
                MetricPoint("auc", 0.75, T0, 3, second.eid),
                MetricPoint("auc", 0.5, T0, 3, deleted.eid),
                MetricPoint("unlinked", 1.0, T0, 0),
            ],
            actor=OPERATOR,
        )
        first_eid, second_eid = first.eid, second.eid
    async with api.database.session(read_only=True) as session:
        project = await projects.get_project(session, path=api.project_path)
        first_row = await logged_models.get_logged_model(session, project=project, eid=first_eid)
        second_row = await logged_models.get_logged_model(session, project=project, eid=second_eid)

    found = await _candidates(api)
    files = (
        f"/projects/{api.project_path}/mlflow/api/2.0/mlflow-artifacts/artifacts"
        f"/{model.iid}/models/{first_eid}/artifacts"
    )

    assert found["plain"] == []
    assert found["trained"] == [
        {
            "id": first_eid,
            "name": "classifier",
            "status": "READY",
            "statusMessage": None,
            "modelType": "agent",
            **_timestamps(first_row),
            "params": [{"name": "C", "value": "1.0"}, {"name": "penalty", "value": "l2"}],
            "tags": [{"name": "team", "value": "vision"}],
            "metrics": [
                {
                    "name": "diverged",
                    "value": None,
                    "kind": "NAN",
                    "step": 0,
                    "timestamp": "2023-11-14T22:13:20+00:00",
                    "datasetName": None,
                    "datasetDigest": None,
                },
                {
                    "name": "loss",
                    "value": 0.5,
                    "kind": "FINITE",
                    "step": 1,
                    "timestamp": "2023-11-14T22:13:20+00:00",
                    "datasetName": "eval",
                    "datasetDigest": "abc123",
                },
                {
                    "name": "loss",
                    "value": 0.25,
                    "kind": "FINITE",
                    "step": 2,
                    "timestamp": "2023-11-14T22:13:21+00:00",
                    "datasetName": "eval",
                    "datasetDigest": "abc123",
                },
            ],
            "files": [
                {
                    "path": "MLmodel",
                    "size": 312,
                    "sha256": "M" * 64,
                    "downloadUrl": f"{files}/MLmodel",
                },
                {
                    "path": "model.pkl",
                    "size": 2048,
                    "sha256": "m" * 64,
                    "downloadUrl": f"{files}/model.pkl",
                },
            ],
        },
        {
            "id": second_eid,
            "name": "regressor",
            "status": "PENDING",
            "statusMessage": None,
            "modelType": None,
            **_timestamps(second_row),
            "params": [],
            "tags": [],
            "metrics": [
                {
                    "name": "auc",
                    "value": 0.75,
                    "kind": "FINITE",
                    "step": 3,
                    "timestamp": "2023-11-14T22:13:20+00:00",
                    "datasetName": None,
                    "datasetDigest": None,
                }
            ],
            "files": [],
        },
    ]


async def test_a_logged_model_shows_the_points_another_run_logged_for_it(
    api: GraphQLApi,
) -> None:
    """MLflow's logged model metrics are every point naming the model, whichever run of
    the project logged it; the model stays listed under its source run only."""
    model = await _model(api)
    async with api.database.session() as session:
        source = await candidates.create_candidate(
            session, model=model, name="source", actor=OPERATOR
        )
        evaluator = await candidates.create_candidate(
            session, model=model, name="evaluator", actor=OPERATOR
        )
        logged = await logged_models.create_logged_model(
            session, model=model, source_candidate=source, actor=OPERATOR
        )
        await candidates.log_batch(
            session,
            candidate=evaluator,
            metrics=[MetricPoint("accuracy", 0.875, T0, 0, logged.eid, "holdout", "d1")],
            actor=OPERATOR,
        )

    found = await _candidates(api)

    assert found["evaluator"] == []
    [listed] = found["source"]
    assert (listed["id"], listed["metrics"]) == (
        logged.eid,
        [
            {
                "name": "accuracy",
                "value": 0.875,
                "kind": "FINITE",
                "step": 0,
                "timestamp": "2023-11-14T22:13:20+00:00",
                "datasetName": "holdout",
                "datasetDigest": "d1",
            }
        ],
    )


async def _seed_page(api: GraphQLApi, model: Model, count: int) -> None:
    """`count` candidates, each with two logged models holding a file and a metric."""
    async with api.database.session() as session:
        for index in range(count):
            candidate: Candidate = await candidates.create_candidate(
                session, model=model, actor=OPERATOR
            )
            points = []
            for offset, name in enumerate(("first", "second")):
                logged = await logged_models.create_logged_model(
                    session, model=model, name=name, source_candidate=candidate, actor=OPERATOR
                )
                package = await packages.logged_model_package(session, logged_model=logged)
                stored = StoredObject(key=f"objects/{index}/{name}", size=index, sha256="0" * 64)
                await packages.add_file(session, package=package, path="MLmodel", stored=stored)
                points.append(MetricPoint("loss", index + offset / 2, T0, 0, logged.eid))
            await candidates.log_batch(session, candidate=candidate, metrics=points, actor=OPERATOR)


async def test_a_page_of_fifty_candidates_costs_the_statements_of_a_page_of_five(
    api: GraphQLApi,
) -> None:
    await _seed_page(api, await _model(api), 60)
    variables = {"path": api.project_path}
    await api.data(CANDIDATES, {**variables, "first": 1})  # the token check is cached after this
    await jobs_settled(api.database)
    seen: dict[int, list[str]] = {}
    for size in (5, 50):
        with recorded() as statements:
            found = await api.data(CANDIDATES, {**variables, "first": size})
        nodes = edges_of(found["project"]["model"]["candidates"])
        assert len(nodes) == size
        for node in nodes:
            assert [logged["name"] for logged in node["loggedModels"]] == ["first", "second"]
            assert all(len(logged["metrics"]) == 1 for logged in node["loggedModels"])
            assert all(len(logged["files"]) == 1 for logged in node["loggedModels"])
        seen[size] = queries(statements)
    assert len(seen[5]) == len(seen[50]), seen
    # The project, the model and the page; then the page's logged models, and their
    # files, metric points, and the project and model their download URLs name (one
    # statement each, in any order).
    assert len(seen[50]) == 8, seen[50]
    assert [_table(statement) for statement in seen[50][:4]] == [
        "projects",
        "models",
        "candidates",
        "logged_models",
    ]
    assert sorted(_table(statement) for statement in seen[50][4:]) == [
        "candidate_metrics",
        "models",
        "package_files",
        "projects",
    ]


def _table(statement: str) -> str:
    """The first table a SELECT reads from."""
    found = re.search(r"\bFROM\s+(\w+)", statement)
    assert found is not None, statement
    return found.group(1)
