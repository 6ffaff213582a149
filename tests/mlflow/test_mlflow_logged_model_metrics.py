"""Metrics of MLflow 3's logged models, and identical points, with the real mlflow client
against a live modelreg on both databases: a metric logged with a model id (and a
dataset) shows on that logged model, in its search and in the run's history; a point
logged again is stored once, as MLflow's metric primary key has it."""

from __future__ import annotations

import math
import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Project
from app.services import candidates, models
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from tests.statements import recorded


def _experiment_id(client: MlflowClient) -> str:
    return client.create_experiment(f"logged-model-metrics-{uuid.uuid4().hex[:8]}")


def _points(metrics: list[Metric] | None) -> list[tuple[object, ...]]:
    assert metrics is not None
    return sorted(
        (m.key, m.value, m.step, m.model_id, m.dataset_name, m.dataset_digest, m.run_id)
        for m in metrics
    )


def test_metrics_logged_with_a_model_id_show_on_the_logged_model_and_in_its_search(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment_id(client)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        model = mlflow.initialize_logged_model(name="classifier", experiment_id=experiment_id)
        other = mlflow.initialize_logged_model(name="other", experiment_id=experiment_id)
        mlflow.log_metric("loss", 0.5, step=1, model_id=model.model_id)
        mlflow.log_metrics({"accuracy": 0.9, "f1": 0.8}, step=2, model_id=model.model_id)
        mlflow.log_metric("unlinked", 1.0)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric(
                    "auc",
                    0.7,
                    now,
                    3,
                    model_id=model.model_id,
                    dataset_name="eval",
                    dataset_digest="abc123",
                ),
                Metric("auc", 0.6, now, 3, model_id=other.model_id),
            ],
        )
    run_id = run.info.run_id

    expected = [
        ("accuracy", 0.9, 2, model.model_id, None, None, run_id),
        ("auc", 0.7, 3, model.model_id, "eval", "abc123", run_id),
        ("f1", 0.8, 2, model.model_id, None, None, run_id),
        ("loss", 0.5, 1, model.model_id, None, None, run_id),
    ]
    assert _points(client.get_logged_model(model.model_id).metrics) == expected
    assert _points(client.get_logged_model(other.model_id).metrics) == [
        ("auc", 0.6, 3, other.model_id, None, None, run_id)
    ]
    found = {
        logged.model_id: _points(logged.metrics)
        for logged in client.search_logged_models(experiment_ids=[experiment_id])
    }
    assert found[model.model_id] == expected

    # The run's history keeps the link; the run's latest metrics are MLflow's plain ones.
    [auc_for_model, auc_for_other] = sorted(
        client.get_metric_history(run_id, "auc"), key=lambda m: -m.value
    )
    assert (auc_for_model.model_id, auc_for_model.dataset_name) == (model.model_id, "eval")
    assert auc_for_model.dataset_digest == "abc123"
    assert auc_for_other.model_id == other.model_id
    assert client.get_metric_history(run_id, "unlinked")[0].model_id is None
    assert client.get_run(run_id).data.metrics["accuracy"] == 0.9


def test_an_identical_point_is_stored_once_and_different_values_at_one_step_are_kept(
    client: MlflowClient,
) -> None:
    run = client.create_run(_experiment_id(client))
    run_id = run.info.run_id
    point = Metric("loss", 0.25, 1_700_000_000_000, 4)
    client.log_batch(run_id, metrics=[point, point])
    client.log_batch(run_id, metrics=[point])
    assert [(m.value, m.step) for m in client.get_metric_history(run_id, "loss")] == [(0.25, 4)]

    client.log_batch(run_id, metrics=[Metric("loss", 0.75, 1_700_000_000_000, 4)])
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.value for m in history) == [0.25, 0.75]
    assert client.get_run(run_id).data.metrics["loss"] == 0.75

    nan = Metric("diverged", math.nan, 1_700_000_000_000, 1)
    client.log_batch(run_id, metrics=[nan, nan])
    client.log_batch(run_id, metrics=[nan])
    [stored_nan] = client.get_metric_history(run_id, "diverged")
    assert math.isnan(stored_nan.value)


def test_a_point_logged_again_for_a_logged_model_gains_the_link(client: MlflowClient) -> None:
    experiment_id = _experiment_id(client)
    run = client.create_run(experiment_id)
    model = client.create_logged_model(experiment_id, source_run_id=run.info.run_id)
    point = Metric("rmse", 1.5, 1_700_000_000_000, 0)
    client.log_batch(run.info.run_id, metrics=[point])
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("rmse", 1.5, 1_700_000_000_000, 0, model_id=model.model_id)],
    )
    [stored] = client.get_metric_history(run.info.run_id, "rmse")
    assert stored.model_id == model.model_id
    assert [m.key for m in client.get_logged_model(model.model_id).metrics or []] == ["rmse"]


def test_a_metric_link_longer_than_its_column_is_refused(client: MlflowClient) -> None:
    run = client.create_run(_experiment_id(client))
    too_long = Metric(
        "loss", 1.0, 1_700_000_000_000, 0, dataset_name="eval", dataset_digest="d" * 37
    )
    with pytest.raises(mlflow.exceptions.MlflowException, match="dataset_digest") as raised:
        client.log_batch(run.info.run_id, metrics=[too_long])
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_metric_history(run.info.run_id, "loss") == []


async def test_logging_a_batch_with_copies_costs_one_statement_per_table(
    session: AsyncSession, project: Project
) -> None:
    """No read per point: the history, the latest values and the model's metric names
    take one statement each, whether the batch repeats points or they are stored already."""
    model = await models.create_model(
        session, project=project, display_name="Counted", actor=OPERATOR
    )
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    await session.flush()
    batch = [MetricPoint("loss", float(step % 3), timestamp=1, step=step) for step in range(500)]
    with recorded() as seen:
        await candidates.log_batch(
            session, candidate=candidate, metrics=batch + batch, actor=OPERATOR
        )
        await candidates.log_batch(session, candidate=candidate, metrics=batch, actor=OPERATOR)
    writes = [statement.split("(")[0].strip() for statement in seen]
    assert (
        writes
        == [
            "INSERT INTO candidate_metrics",
            "INSERT INTO candidate_latest_metrics",
            "INSERT INTO model_candidate_keys",
        ]
        * 2
    )
    history = await candidates.get_metric_history(session, candidate=candidate, name="loss")
    assert [point.step for point in history] == list(range(500))
