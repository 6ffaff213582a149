"""A LightGBM autolog run against a live modelreg on both databases, read back with the real
mlflow client as MLflow's own server returns it.

What `mlflow.lightgbm.autolog()` sends for `lightgbm.train` (mlflow/lightgbm/__init__.py):
the booster params and the other arguments of `train` (defaults included) as run params;
the train and validation sets as dataset inputs; one point per round and validation set,
at step `iteration` (from 0), linked to the logged model it creates before training
(`model_id`); that model named "model", logged from the run and finalized READY. MLflow's
store keeps each linked point as a metric of the logged model, so the logged model's
metrics are the run's whole linked history."""

from __future__ import annotations

import json
import uuid

import httpx
import lightgbm
import mlflow
import mlflow.lightgbm
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Metric

from app.services.logged_models import MODEL_VERSIONS_TAG
from tests.live_server import LiveServer

ROUNDS = 5
BOOSTER_PARAMS = {
    "objective": "binary",
    "metric": "binary_logloss",
    "num_leaves": 4,
    "learning_rate": 0.3,
    "min_data_in_leaf": 5,
    "num_threads": 1,
    "deterministic": True,
    "seed": 7,
    "verbose": -1,
}
METRIC_NAMES = ["train-binary_logloss", "valid-binary_logloss"]


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    features = np.random.default_rng(seed).random((rows, 3))
    labels = (features[:, 0] + features[:, 1] > 1.0).astype(int)
    return features, labels


def _train() -> tuple[lightgbm.Booster, dict[str, dict[str, list[float]]]]:
    """A few rounds on a tiny dataset, with LightGBM's own record of each round's loss."""
    train_features, train_labels = _data(120, seed=1)
    valid_features, valid_labels = _data(40, seed=2)
    train_set = lightgbm.Dataset(train_features, label=train_labels)
    valid_set = lightgbm.Dataset(valid_features, label=valid_labels, reference=train_set)
    evaluations: dict[str, dict[str, list[float]]] = {}
    booster = lightgbm.train(
        BOOSTER_PARAMS,
        train_set,
        num_boost_round=ROUNDS,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[lightgbm.record_evaluation(evaluations)],
    )
    return booster, evaluations


def _history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float, str | None]]:
    points = client.get_metric_history(run_id, name)
    return sorted((point.step, point.value, point.model_id) for point in points)


def _linked(metrics: list[Metric] | None) -> list[tuple[str, int, float, str | None, str | None]]:
    assert metrics is not None
    return sorted((m.key, m.step, m.value, m.model_id, m.run_id) for m in metrics)


def test_a_lightgbm_autolog_run_reads_back_as_mlflows_server_returns_it(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = client.create_experiment(f"lightgbm-autolog-{uuid.uuid4().hex[:8]}")
    mlflow.lightgbm.autolog(silent=True)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            booster, evaluations = _train()
    finally:
        mlflow.lightgbm.autolog(disable=True)
    run_id = run.info.run_id
    [logged] = client.search_logged_models(experiment_ids=[experiment_id])
    model_id = logged.model_id

    # Params: the booster's, then `train`'s other arguments, as MLflow stringifies them.
    read = client.get_run(run_id)
    assert read.data.params == {
        **{name: str(value) for name, value in BOOSTER_PARAMS.items()},
        "num_boost_round": str(ROUNDS),
        "keep_training_booster": "False",
    }

    # Datasets: the train set (unnamed, as "train"), then each validation set by its name
    # (as "eval"); the train set listed again under its validation name is a dataset of
    # its own for MLflow's store, which tells datasets apart by name and digest.
    inputs = read.inputs
    assert inputs is not None
    datasets = sorted(
        (item.dataset.name, [(tag.key, tag.value) for tag in item.tags], item.dataset.digest)
        for item in inputs.dataset_inputs
    )
    assert [(name, tags) for name, tags, _digest in datasets] == [
        ("dataset", [("mlflow.data.context", "train")]),
        ("train", [("mlflow.data.context", "eval")]),
        ("valid", [("mlflow.data.context", "eval")]),
    ]
    assert datasets[0][2] == datasets[1][2] != datasets[2][2]

    # Histories: one point per round, steps from 0, each linked to the logged model.
    expected_points = {
        f"{data}-binary_logloss": evaluations[data]["binary_logloss"] for data in ("train", "valid")
    }
    for name, values in expected_points.items():
        assert len(values) == ROUNDS
        assert _history(client, run_id, name) == [
            (step, value, model_id) for step, value in enumerate(values)
        ]
    # The run's metrics are the last round's.
    assert read.data.metrics == {name: values[-1] for name, values in expected_points.items()}

    # The logged model: READY, from the run, with every linked point as its metrics.
    logged = client.get_logged_model(model_id)
    assert (logged.name, logged.status, logged.source_run_id, logged.experiment_id) == (
        "model",
        LoggedModelStatus.READY,
        run_id,
        experiment_id,
    )
    # Autolog creates it without params (the run's are not copied when a model id is given).
    assert logged.params == {}
    assert _linked(logged.metrics) == sorted(
        (name, step, value, model_id, run_id)
        for name, values in expected_points.items()
        for step, value in enumerate(values)
    )
    outputs = read.outputs
    assert outputs is not None
    assert [output.model_id for output in outputs.model_outputs] == [model_id]

    # Feature importances: a JSON artifact of the run per kind (plots need matplotlib).
    importance = mlflow.artifacts.load_dict(f"runs:/{run_id}/feature_importance_split.json")
    split = np.asarray(booster.feature_importance(importance_type="split")).tolist()
    assert importance == dict(zip(booster.feature_name(), split, strict=True))

    # Searched by a metric: a model matches when any of its points compares true.
    best = min(expected_points["valid-binary_logloss"])
    found = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"metrics.`valid-binary_logloss` <= {best}"
    )
    assert [model.model_id for model in found] == [model_id]
    assert (
        client.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"metrics.`valid-binary_logloss` < {best}",
        )
        == []
    )

    # Loaded back, it predicts what the booster in memory predicts.
    features, _ = _data(10, seed=3)
    loaded = mlflow.lightgbm.load_model(f"models:/{model_id}")
    assert loaded.predict(features).tolist() == np.asarray(booster.predict(features)).tolist()

    # Registered from the run's "model" path: the client finds no MLmodel among the run's
    # artifacts, so it registers `models:/<model id>` with the run id and the model id.
    name = f"lightgbm-{uuid.uuid4().hex[:8]}"
    version = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert (version.version, version.source, version.run_id) == ("1", f"models:/{model_id}", run_id)
    # The client's ModelVersion.from_proto drops `model_id`; the server's answer holds it.
    answer = httpx.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": "1"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert answer.status_code == 200, answer.text
    rendered = answer.json()["model_version"]
    assert (rendered["source"], rendered["run_id"], rendered["model_id"]) == (
        f"models:/{model_id}",
        run_id,
        model_id,
    )
    # The server lists the version with its number; the fluent `register_model` then
    # appends its own entry with the version as the string it got back, unchecked.
    tag = client.get_logged_model(model_id).tags[MODEL_VERSIONS_TAG]
    assert json.loads(tag) == [{"name": name, "version": 1}, {"name": name, "version": "1"}]
    by_version = mlflow.lightgbm.load_model(f"models:/{name}/1")
    assert by_version.predict(features).tolist() == np.asarray(booster.predict(features)).tolist()
