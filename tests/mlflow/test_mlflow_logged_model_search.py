"""Searching MLflow 3's logged models by their metrics, params and datasets, with the real
mlflow client against a live modelreg on both databases, as MLflow's store answers it: a
metric filter matches a model with any point of the key comparing true (only points on
the request's datasets when it names some); ordering by a metric uses the model's latest
point (newest timestamp, then highest step), models without it last; paging walks every
match once."""

from __future__ import annotations

import math
import time
import uuid

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Metric
from sqlalchemy.ext.asyncio import AsyncSession

from app.mlflow.logged_models import compile_filter, compile_order_by
from app.models import Project
from app.services import candidates, logged_models, models
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from tests.clients import bearer
from tests.live_server import LiveServer
from tests.statements import recorded


def _experiment_id(client: MlflowClient) -> str:
    return client.create_experiment(f"logged-model-search-{uuid.uuid4().hex[:8]}")


def _log(
    client: MlflowClient,
    run_id: str,
    model: LoggedModel,
    key: str,
    value: float,
    *,
    step: int = 0,
    timestamp: int | None = None,
    dataset: str | None = None,
    digest: str | None = None,
) -> None:
    metric = Metric(
        key,
        value,
        timestamp if timestamp is not None else int(time.time() * 1000),
        step,
        model_id=model.model_id,
        dataset_name=dataset,
        dataset_digest=digest,
    )
    client.log_batch(run_id, metrics=[metric])


def _names(models: list[LoggedModel]) -> list[str]:
    return [model.name for model in models]


def test_the_best_models_by_a_metric_filter_and_order_as_mlflow_picks_them(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment_id(client)
    run_id = client.create_run(experiment_id).info.run_id
    created = {
        name: client.create_logged_model(experiment_id, name=name)
        for name in ("best", "good", "poor", "rising", "falling", "unmeasured")
    }
    now = int(time.time() * 1000)
    _log(client, run_id, created["best"], "accuracy", 0.9)
    _log(client, run_id, created["good"], "accuracy", 0.7)
    _log(client, run_id, created["poor"], "accuracy", 0.3)
    # The latest point orders a model: by timestamp first, then by step.
    _log(client, run_id, created["rising"], "accuracy", 0.4, step=5, timestamp=now)
    _log(client, run_id, created["rising"], "accuracy", 0.8, step=1, timestamp=now + 1)
    _log(client, run_id, created["falling"], "accuracy", 0.95, step=1, timestamp=now)
    _log(client, run_id, created["falling"], "accuracy", 0.1, step=2, timestamp=now)
    _log(client, run_id, created["unmeasured"], "loss", 0.1)

    best_first = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string="metrics.accuracy > 0.5",
        order_by=[{"field_name": "metrics.accuracy", "ascending": False}],
        output_format="list",
    )
    # "falling" once logged 0.95: any point matches, as in MLflow's store.
    assert _names(best_first) == ["best", "rising", "good", "falling"]

    everything = client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "metrics.accuracy", "ascending": True}]
    )
    assert _names(everything) == ["falling", "poor", "good", "rising", "best", "unmeasured"]
    # Each comparison may match a different point ("falling": 0.1, then 0.95); newest first.
    assert _names(
        client.search_logged_models(
            [experiment_id], filter_string="metrics.accuracy <= 0.3 AND metrics.accuracy != 0.1"
        )
    ) == ["falling", "poor"]
    assert _names(
        client.search_logged_models([experiment_id], filter_string="metrics.accuracy < 0.2")
    ) == ["falling"]


def test_models_filter_by_their_params_and_tags(client: MlflowClient) -> None:
    experiment_id = _experiment_id(client)
    client.create_logged_model(experiment_id, name="c-one", params={"C": "1.0"})
    client.create_logged_model(
        experiment_id, name="c-one-tagged", params={"C": "1.0"}, tags={"team": "vision"}
    )
    client.create_logged_model(experiment_id, name="c-half", params={"C": "0.5"})
    client.create_logged_model(experiment_id, name="no-params")

    def names(filter_string: str) -> list[str]:
        found = client.search_logged_models(
            [experiment_id],
            filter_string=filter_string,
            order_by=[{"field_name": "name", "ascending": True}],
        )
        return _names(found)

    assert names("params.C = '1.0'") == ["c-one", "c-one-tagged"]
    # `!=` needs the param, as MLflow's join does.
    assert names("params.C != '1.0'") == ["c-half"]
    assert names("params.C LIKE '%.5'") == ["c-half"]
    assert names("params.C = '1.0' AND tags.team = 'vision'") == ["c-one-tagged"]
    assert names("params.missing = '1.0'") == []


def test_a_datasets_clause_counts_only_the_metrics_of_those_datasets(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment_id(client)
    run_id = client.create_run(experiment_id).info.run_id
    strong_on_eval = client.create_logged_model(experiment_id, name="strong-on-eval")
    strong_on_train = client.create_logged_model(experiment_id, name="strong-on-train")
    unevaluated = client.create_logged_model(experiment_id, name="unevaluated")
    _log(client, run_id, strong_on_eval, "auc", 0.9, dataset="eval", digest="e1")
    _log(client, run_id, strong_on_eval, "auc", 0.2, dataset="train", digest="t1")
    _log(client, run_id, strong_on_train, "auc", 0.2, dataset="eval", digest="e1")
    _log(client, run_id, strong_on_train, "auc", 0.9, dataset="train", digest="t1")
    _log(client, run_id, unevaluated, "auc", 0.99)

    def names(
        filter_string: str | None,
        datasets: list[dict[str, str]] | None,
        order_by: list[dict[str, object]] | None = None,
    ) -> list[str]:
        found = client.search_logged_models(
            [experiment_id],
            filter_string=filter_string,
            datasets=datasets,
            order_by=order_by or [{"field_name": "name", "ascending": True}],
        )
        return _names(found)

    assert names("metrics.auc > 0.5", None) == [
        "strong-on-eval",
        "strong-on-train",
        "unevaluated",
    ]
    assert names("metrics.auc > 0.5", [{"dataset_name": "eval"}]) == ["strong-on-eval"]
    assert names("metrics.auc > 0.5", [{"dataset_name": "eval", "dataset_digest": "e1"}]) == [
        "strong-on-eval"
    ]
    assert names("metrics.auc > 0.5", [{"dataset_name": "eval", "dataset_digest": "zz"}]) == []
    # Datasets alone keep the models measured on them.
    assert names(None, [{"dataset_name": "train"}]) == ["strong-on-eval", "strong-on-train"]
    by_train_auc = [{"field_name": "metrics.auc", "ascending": False, "dataset_name": "train"}]
    assert names(None, None, by_train_auc) == ["strong-on-train", "strong-on-eval", "unevaluated"]


def test_paging_through_more_models_than_a_page_returns_each_once_in_order(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment_id(client)
    run_id = client.create_run(experiment_id).info.run_id
    for index in range(7):
        model = client.create_logged_model(experiment_id, name=f"model-{index}")
        # Two models share each score: ties go to the newest model first.
        _log(client, run_id, model, "score", float(index // 2))
    client.create_logged_model(experiment_id, name="unscored")
    order_by = [{"field_name": "metrics.score", "ascending": True}]

    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = client.search_logged_models(
            [experiment_id], max_results=3, order_by=order_by, page_token=token
        )
        pages.append(_names(page))
        token = page.token
        if not token:
            break
    assert pages == [
        ["model-1", "model-0", "model-3"],
        ["model-2", "model-5", "model-4"],
        ["model-6", "unscored"],
    ]


@pytest.mark.parametrize(
    ("filter_string", "order_by", "datasets"),
    [
        ("metrics.accuracy > 'high'", None, None),
        ("metrics.accuracy LIKE '0.%'", None, None),
        ("params.C > '1.0'", None, None),
        ("unknown.accuracy > 0.5", None, None),
        ("metrics.accuracy >", None, None),
        (None, [{"field_name": "params.C"}], None),
        (None, [{"field_name": "metrics.accuracy"}, {"field_name": "metrics.accuracy"}], None),
        (None, None, [{"dataset_name": "", "dataset_digest": "e1"}]),
    ],
)
def test_a_bad_search_answers_invalid_parameter_value(
    client: MlflowClient,
    filter_string: str | None,
    order_by: list[dict[str, object]] | None,
    datasets: list[dict[str, str]] | None,
) -> None:
    experiment_id = _experiment_id(client)
    with pytest.raises(mlflow.exceptions.MlflowException) as raised:
        client.search_logged_models(
            [experiment_id], filter_string=filter_string, order_by=order_by, datasets=datasets
        )
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "order_by",
    [
        [{"field_name": "metrics.accuracy", "ascending": "yes"}],
        [{"field_name": "metrics.accuracy", "dataset_name": 7}],
        [{"ascending": True}],
    ],
)
def test_a_malformed_order_by_answers_invalid_parameter_value(
    client: MlflowClient, server: LiveServer, order_by: list[dict[str, object]]
) -> None:
    # The client's protobuf refuses these before sending: other clients may not.
    response = httpx.post(
        f"{server.url}/api/2.0/mlflow/logged-models/search",
        json={"experiment_ids": [_experiment_id(client)], "order_by": order_by},
        headers=bearer(server.admin_token),
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_a_page_is_filtered_and_ordered_by_the_database_in_one_statement(
    session: AsyncSession, project: Project
) -> None:
    """However many logged models an experiment holds, a page costs one SELECT: nothing is
    filtered or sorted in Python. NaN sorts after numbers and before models without the
    metric, and `!=` matches it (IEEE)."""
    model = await models.create_model(
        session, project=project, display_name="Searched", actor=OPERATOR
    )
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    created = [
        await logged_models.create_logged_model(
            session, model=model, name=f"model-{index}", actor=OPERATOR
        )
        for index in range(12)
    ]
    values = [float(index) for index in range(10)] + [math.nan]
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[
            MetricPoint("accuracy", value, timestamp=1, logged_model_eid=logged.eid)
            for logged, value in zip(created, values, strict=False)
        ],
        actor=OPERATOR,
    )
    await session.flush()

    async def page(filter_string: str, offset: int) -> list[str]:
        rows = await logged_models.list_logged_models(
            session,
            models=[model],
            where=compile_filter(filter_string),
            order_by=compile_order_by([{"field_name": "metrics.accuracy", "ascending": False}]),
            limit=4,
            offset=offset,
        )
        return [row.name for row in rows]

    with recorded() as seen:
        first = await page("metrics.accuracy >= 2", 0)
    assert first == ["model-9", "model-8", "model-7", "model-6"]
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith("SELECT")
    assert await page("metrics.accuracy != 5", 8) == ["model-0", "model-10"]
    assert await page("name LIKE 'model-1%'", 0) == ["model-1", "model-10", "model-11"]
