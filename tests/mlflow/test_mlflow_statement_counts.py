"""The round trips of the MLflow calls a training script makes most, statement by
statement, so that one more query on a hot path fails here rather than in a benchmark.

Each call is made once to warm the token cache, then recorded as a developer of a
private project (the token check, cached, and transaction control are left out: see
`tests.statements.queries`). Every call starts with the project of the tracking URI and
the caller's role in it, one statement; what follows is the call's own work.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Role
from tests.clients import bearer, jobs_settled
from tests.graphql_support import GraphQLApi, graphql_api
from tests.statements import queries, recorded

MLFLOW = "/projects/lab/mlflow/api/2.0/mlflow"
THE_CALLER = ["SELECT projects"]  # with the caller's membership, joined
RENDER_RUNS = [
    "SELECT models",
    "SELECT users",
    "SELECT candidate_params",
    "SELECT candidate_metadata",
    "SELECT candidate_latest_metrics",
    "SELECT candidate_inputs",
]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as running:
        yield running


def shape(statement: str) -> str:
    """A statement as its verb and the table it works on: `INSERT candidates`."""
    words = statement.split()
    verb = words[0].upper()
    if verb == "SELECT":
        table = re.search(r"\bFROM\s+(\w+)", statement, re.IGNORECASE)
    elif verb == "INSERT":
        table = re.search(r"\bINTO\s+(\w+)", statement, re.IGNORECASE)
    else:
        table = re.search(rf"\b{verb}\s+(\w+)", statement, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else '?'}"


class Caller:
    def __init__(self, api: GraphQLApi, token: str) -> None:
        self.api = api
        self.headers = bearer(token)

    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        response = await self.api.client.request(
            method, MLFLOW + path, json=body, headers=self.headers
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def counted(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """The answer to a call and the shapes of the statements it ran."""
        with recorded() as statements:
            answer = await self.send(method, path, body)
        return answer, [shape(statement) for statement in queries(statements)]


@pytest.fixture
async def caller(api: GraphQLApi) -> Caller:
    token = await api.add_user("dev", role=Role.DEVELOPER)
    calling = Caller(api, token)
    # The token check is cached after this; the embedded runner's first sweep is over.
    await calling.send("POST", "/experiments/create", {"name": "warm-up"})
    await jobs_settled(api.database)
    return calling


async def test_create_run_writes_the_run_and_renders_what_it_wrote(caller: Caller) -> None:
    experiment = await caller.send("POST", "/experiments/create", {"name": "exp"})
    created, statements = await caller.counted(
        "POST",
        "/runs/create",
        {
            "experiment_id": experiment["experiment_id"],
            "start_time": 5,
            "run_name": "first",
            "tags": [{"key": "team", "value": "vision"}],
        },
    )
    assert statements == [
        *THE_CALLER,
        "SELECT models",
        "UPDATE projects",  # the project's next candidate number
        "INSERT candidates",
        "INSERT audit_events",
        "INSERT candidate_metadata",
        "INSERT model_candidate_keys",
    ]
    # What create answers is exactly what a later read of the run finds.
    run_id = created["run"]["info"]["run_id"]
    read, statements = await caller.counted("GET", f"/runs/get?run_id={run_id}")
    assert statements == [*THE_CALLER, "SELECT candidates", *RENDER_RUNS]
    assert created == read
    assert read["run"]["data"]["tags"] == [
        {"key": "team", "value": "vision"},
        {"key": "mlflow.runName", "value": "first"},
    ]
    assert read["run"]["info"]["user_id"] == "dev"


async def test_logging_and_finishing_a_run(caller: Caller) -> None:
    experiment = await caller.send("POST", "/experiments/create", {"name": "exp"})
    created = await caller.send(
        "POST", "/runs/create", {"experiment_id": experiment["experiment_id"]}
    )
    run_id = created["run"]["info"]["run_id"]

    _, statements = await caller.counted(
        "POST", "/runs/set-tag", {"run_id": run_id, "key": "stage", "value": "train"}
    )
    assert statements == [
        *THE_CALLER,
        "SELECT candidates",
        "INSERT candidate_metadata",
        "INSERT model_candidate_keys",
    ]

    _, statements = await caller.counted(
        "POST",
        "/runs/log-metric",
        {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
    )
    one_metric = [
        *THE_CALLER,
        "SELECT candidates",
        "INSERT candidate_metrics",
        "INSERT candidate_latest_metrics",
        "INSERT model_candidate_keys",
    ]
    assert statements == one_metric

    # A batch of a thousand points of two metrics costs what one point costs.
    points = [
        {"key": key, "value": float(step), "timestamp": 2, "step": step}
        for step in range(1, 501)
        for key in ("loss", "accuracy")
    ]
    _, statements = await caller.counted(
        "POST", "/runs/log-batch", {"run_id": run_id, "metrics": points}
    )
    assert statements == one_metric

    history, statements = await caller.counted(
        "GET", f"/metrics/get-history?run_id={run_id}&metric_key=loss"
    )
    assert statements == [*THE_CALLER, "SELECT candidates", "SELECT candidate_metrics"]
    assert len(history["metrics"]) == 501

    finished, statements = await caller.counted(
        "POST", "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 9}
    )
    assert statements == [
        *THE_CALLER,
        "SELECT candidates",
        "SELECT webhooks",  # the hooks a finished run is announced to (none here)
        "UPDATE candidates",
        "INSERT audit_events",
        "SELECT models",  # the experiment id the answer names
    ]
    assert finished["run_info"]["status"] == "FINISHED"
    assert finished["run_info"]["end_time"] == 9


async def test_a_search_costs_the_same_for_one_run_and_for_fifty(caller: Caller) -> None:
    experiment = await caller.send("POST", "/experiments/create", {"name": "exp"})
    experiment_id = experiment["experiment_id"]
    search = {
        "experiment_ids": [experiment_id],
        "filter": "metrics.loss < 100",
        "order_by": ["metrics.loss ASC"],
        "max_results": 100,
    }
    seen: dict[int, list[str]] = {}
    for count in (1, 50):
        while len((await caller.send("POST", "/runs/search", search)).get("runs", [])) < count:
            run = await caller.send("POST", "/runs/create", {"experiment_id": experiment_id})
            await caller.send(
                "POST",
                "/runs/log-metric",
                {
                    "run_id": run["run"]["info"]["run_id"],
                    "key": "loss",
                    "value": 1.0,
                    "timestamp": 1,
                    "step": 0,
                },
            )
        found, seen[count] = await caller.counted("POST", "/runs/search", search)
        assert len(found["runs"]) == count
    assert seen[1] == seen[50]
    assert seen[50] == [
        *THE_CALLER,
        "SELECT models",  # the experiments named, within the project
        "SELECT candidates",  # the runs that have the metric, walked on its index
        "SELECT candidates",  # then those without it: last, as MLflow orders them
        *RENDER_RUNS,
    ]
