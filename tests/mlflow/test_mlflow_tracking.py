"""Unchanged MLflow code against a live modelreg: experiments, runs, params, metrics and
tags through the real `mlflow` client, and MLflow's error codes for bad input."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException, RestException

from app.db import Database
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from tests.live_server import LiveServer


def error_code(error: MlflowException) -> str:
    return str(error.error_code)


def test_experiments_are_created_found_renamed_and_deleted(client: MlflowClient) -> None:
    experiment = mlflow.set_experiment("Churn Experiments")
    assert experiment.name == "Churn Experiments"
    assert int(experiment.experiment_id) > 0
    found = client.get_experiment_by_name("Churn Experiments")
    assert found is not None
    assert found.experiment_id == experiment.experiment_id
    assert client.get_experiment_by_name("does not exist") is None
    with pytest.raises(RestException) as raised:
        client.create_experiment("Churn Experiments")
    assert error_code(raised.value) == "RESOURCE_ALREADY_EXISTS"

    client.rename_experiment(experiment.experiment_id, "Churn Experiments v2")
    client.set_experiment_tag(experiment.experiment_id, "team", "growth")
    renamed = client.get_experiment(experiment.experiment_id)
    assert (renamed.name, renamed.tags["team"]) == ("Churn Experiments v2", "growth")

    client.delete_experiment(experiment.experiment_id)
    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "deleted"
    client.restore_experiment(experiment.experiment_id)
    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "active"


def test_the_default_experiment_is_id_zero(client: MlflowClient) -> None:
    assert client.get_experiment("0").name == "Default"


def test_a_run_logs_params_metrics_and_tags(client: MlflowClient) -> None:
    mlflow.set_experiment("Runs")
    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 3, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"accuracy": 0.9, "nan": math.nan, "inf": math.inf})
        mlflow.set_tags({"team": "a", "stage": "dev"})
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.run_name == "baseline"
    assert fetched.info.status == "FINISHED"
    assert fetched.info.end_time is not None
    assert fetched.data.params == {"lr": "0.1", "depth": "3", "optimizer": "adam"}
    assert fetched.data.metrics["loss"] == 0.2
    assert fetched.data.metrics["accuracy"] == 0.9
    assert math.isnan(fetched.data.metrics["nan"])
    assert fetched.data.metrics["inf"] == math.inf
    assert fetched.data.tags["team"] == "a"
    assert fetched.data.tags["mlflow.runName"] == "baseline"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]


def test_metric_history_keeps_nan_and_infinities(client: MlflowClient) -> None:
    mlflow.set_experiment("Specials")
    with mlflow.start_run() as run:
        for step, value in enumerate([1.0, math.nan, math.inf, -math.inf]):
            mlflow.log_metric("x", value, step=step)
    values = [m.value for m in client.get_metric_history(run.info.run_id, "x")]
    assert values[0] == 1.0
    assert math.isnan(values[1])
    assert values[2:] == [math.inf, -math.inf]


def test_log_batch_writes_everything_or_nothing(client: MlflowClient) -> None:
    mlflow.set_experiment("Batches")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
    run_id = run.info.run_id
    with pytest.raises(RestException) as raised:
        client.log_batch(
            run_id,
            metrics=[mlflow.entities.Metric("kept?", 1.0, 0, 0)],
            params=[mlflow.entities.Param("lr", "0.2")],
        )
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    data = client.get_run(run_id).data
    assert data.params == {"lr": "0.1"}
    assert data.metrics == {}


def test_runs_are_deleted_and_restored_and_deleted_runs_take_no_writes(
    client: MlflowClient,
) -> None:
    mlflow.set_experiment("Deletions")
    with mlflow.start_run() as run:
        pass
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as raised:
        client.log_param(run.info.run_id, "late", "1")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    client.restore_run(run.info.run_id)
    client.log_param(run.info.run_id, "late", "1")
    assert client.get_run(run.info.run_id).data.params == {"late": "1"}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.get_run("0" * 32), "RESOURCE_DOES_NOT_EXIST"),
        (lambda c: c.get_experiment("424242"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda c: c.get_experiment("not-a-number"), "INVALID_PARAMETER_VALUE"),
        (lambda c: c.create_experiment(""), "INVALID_PARAMETER_VALUE"),
        (lambda c: c.create_run("424242"), "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_bad_input_gets_mlflows_error_code(client: MlflowClient, call: object, code: str) -> None:
    with pytest.raises(RestException) as raised:
        call(client)  # type: ignore[operator]
    assert error_code(raised.value) == code


@pytest.mark.parametrize("key", ["../escape", "/absolute", "bad!char", "x" * 251])
def test_invalid_keys_are_refused(client: MlflowClient, key: str) -> None:
    mlflow.set_experiment("Keys")
    with mlflow.start_run() as run:
        pass
    with pytest.raises(MlflowException) as raised:
        client.log_param(run.info.run_id, key, "v")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"


def test_http_errors_are_mlflow_json_with_its_statuses(server: LiveServer) -> None:
    unknown = httpx.get(f"{server.url}/api/2.0/mlflow/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    anonymous = httpx.get(f"{server.url}/api/2.0/mlflow/experiments/get?experiment_id=0")
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    bad_json = httpx.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        content=b"{not json",
        headers={
            "Authorization": f"Bearer {server.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert (bad_json.status_code, bad_json.json()["error_code"]) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    missing = httpx.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=nope",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert httpx.get(f"{server.url}/health").text == "OK"


async def test_runs_logged_through_mlflow_are_candidates_of_the_model(
    server: LiveServer, client: MlflowClient
) -> None:
    experiment = mlflow.set_experiment("Visible Candidates")
    with mlflow.start_run(run_name="seen") as run:
        mlflow.log_metric("auc", 0.75)
        mlflow.log_param("trees", "100")
    database = Database(server.database_url)
    try:
        async with database.session(read_only=True) as session:
            project = await projects.get_default_project(session)
            model = await models.get_model(
                session, project=project, iid=int(experiment.experiment_id)
            )
            [candidate] = await candidates.list_candidates(session, model=model)
            assert (model.name, candidate.eid, candidate.name) == (
                "visible_candidates",
                run.info.run_id,
                "seen",
            )
            latest = await candidates.get_latest_metrics(session, candidate=candidate)
            assert [(m.name, m.value) for m in latest] == [("auc", 0.75)]
            assert await candidates.get_params(session, candidate=candidate) == {"trees": "100"}
    finally:
        await database.dispose()


def _search_experiment(client: MlflowClient) -> tuple[str, dict[str, str]]:
    """An experiment with five runs of known params, metrics, tags and statuses."""
    experiment_id = client.create_experiment(f"Search {uuid.uuid4().hex[:8]}")
    runs: dict[str, str] = {}
    table = [
        ("alpha", "adam", 0.91, "vision", "FINISHED"),
        ("beta", "sgd", 0.75, "Vision-team", "FINISHED"),
        ("gamma", "adam", 0.60, "nlp", "FAILED"),
        ("delta", "rmsprop", math.nan, "nlp", "KILLED"),
        ("epsilon", "sgd", 0.99, "audio", "RUNNING"),
    ]
    for start, (name, optimizer, accuracy, team, status) in enumerate(table):
        run = client.create_run(experiment_id, run_name=name, start_time=1000 + start)
        client.log_batch(
            run.info.run_id,
            metrics=[mlflow.entities.Metric("accuracy", accuracy, 0, 0)],
            params=[mlflow.entities.Param("optimizer", optimizer)],
            tags=[mlflow.entities.RunTag("team name", team)],
        )
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status=status)
        runs[name] = run.info.run_id
    return experiment_id, runs


@pytest.fixture(scope="module")
def searched(server: LiveServer) -> Iterator[tuple[str, dict[str, str]]]:
    """One search experiment for the module (its runs are only read)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        yield _search_experiment(MlflowClient(server.url))


@pytest.mark.parametrize(
    ("filter_string", "order_by", "expected"),
    [
        ("metrics.accuracy > 0.7", ["metrics.accuracy DESC"], ["epsilon", "alpha", "beta"]),
        ("metrics.accuracy > 0.7 and params.optimizer = 'adam'", [], ["alpha"]),
        ("params.optimizer != 'adam'", ["run_name"], ["beta", "delta", "epsilon"]),
        ("tags.`team name` LIKE 'vis%'", [], ["alpha"]),
        ("tags.`team name` ILIKE '%vision%'", ["run_name"], ["alpha", "beta"]),
        ("attributes.status IN ('FAILED', 'KILLED')", ["run_name"], ["delta", "gamma"]),
        ("run_name = 'gamma'", [], ["gamma"]),
        ("attributes.run_name ILIKE 'E%'", [], ["epsilon"]),
        (
            "params.missing IS NULL and metric.accuracy < 0.8",
            ["metrics.accuracy"],
            ["gamma", "beta"],
        ),
        ('tags."team name" = "nlp"', ["attributes.start_time DESC"], ["delta", "gamma"]),
        ("attributes.start_time >= 1003", ["start_time ASC"], ["delta", "epsilon"]),
        ("", ["metrics.accuracy ASC"], ["gamma", "beta", "alpha", "epsilon", "delta"]),
        ("", ["params.optimizer DESC", "run_name"], ["beta", "epsilon", "delta", "alpha", "gamma"]),
    ],
)
def test_search_runs_filters_and_orders_as_mlflow(
    client: MlflowClient,
    searched: tuple[str, dict[str, str]],
    filter_string: str,
    order_by: list[str],
    expected: list[str],
) -> None:
    experiment_id, _ = searched
    found = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by)
    names = [run.info.run_name for run in found]
    assert names == expected if order_by else sorted(names) == sorted(expected)


@pytest.mark.parametrize(
    "filter_string",
    [
        "metrics.accuracy > 'high'",
        "params.optimizer > 1",
        "unknown.thing = 1",
        "metrics.accuracy >",
        "tags.`unclosed = 'x'",
        "attributes.status = 'FINISHED' or run_name = 'x'",
    ],
)
def test_a_bad_filter_is_invalid_parameter_value_with_the_reason(
    client: MlflowClient, filter_string: str
) -> None:
    with pytest.raises(MlflowException) as raised:
        client.search_runs(["0"], filter_string=filter_string)
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    assert "filter" in str(raised.value).lower()


def test_one_search_spans_several_experiments(client: MlflowClient) -> None:
    first, first_runs = _search_experiment(client)
    second, second_runs = _search_experiment(client)
    found = client.search_runs([first, second], filter_string="params.optimizer = 'adam'")
    assert {run.info.run_id for run in found} == {
        first_runs["alpha"],
        first_runs["gamma"],
        second_runs["alpha"],
        second_runs["gamma"],
    }


def test_deleted_runs_show_only_when_asked(client: MlflowClient) -> None:
    experiment_id, runs = _search_experiment(client)
    client.delete_run(runs["alpha"])
    active = client.search_runs([experiment_id])
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    everything = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert runs["alpha"] not in {run.info.run_id for run in active}
    assert [run.info.run_id for run in deleted] == [runs["alpha"]]
    assert len(everything) == 5


async def test_paging_through_2500_runs_returns_each_once_in_order(
    server: LiveServer, client: MlflowClient
) -> None:
    experiment_id = client.create_experiment(f"Paging {uuid.uuid4().hex[:8]}")
    database = Database(server.database_url)
    try:
        async with database.session() as session:
            project = await projects.get_default_project(session)
            model = await models.get_model(session, project=project, iid=int(experiment_id))
            for index in range(2500):
                await candidates.create_candidate(
                    session, model=model, start_time=index, actor=OPERATOR
                )
    finally:
        await database.dispose()
    seen: list[int] = []
    token = None
    pages = 0
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        seen.extend(run.info.start_time for run in page)
        pages += 1
        token = page.token
        if not token:
            break
    assert pages == 3
    assert seen == list(range(2499, -1, -1))


def test_max_results_past_mlflows_limit_is_refused(client: MlflowClient) -> None:
    with pytest.raises(MlflowException) as raised:
        client.search_runs(["0"], max_results=50_001)
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"


def test_search_experiments_by_name_and_tag(client: MlflowClient) -> None:
    suffix = uuid.uuid4().hex[:8]
    first = client.create_experiment(f"needle-{suffix}", tags={"kind": "a"})
    client.create_experiment(f"hay-{suffix}", tags={"kind": "b"})
    by_name = client.search_experiments(filter_string=f"name LIKE 'needle-{suffix}%'")
    by_tag = client.search_experiments(filter_string=f"tags.kind = 'a' and name LIKE '%{suffix}'")
    assert [e.experiment_id for e in by_name] == [first]
    assert [e.experiment_id for e in by_tag] == [first]
