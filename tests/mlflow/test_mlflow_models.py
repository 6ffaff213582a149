"""MLflow 3's model logging against a live modelreg: `log_model` creates a logged model,
uploads its files into its own package, registers it, and every way of loading it back
gives the same predictions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException, RestException
from mlflow.models.model import ModelInfo
from sklearn.linear_model import LogisticRegression
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.models import Model, Package, PackageType
from app.services import logged_models, models, packages, projects
from tests.live_server import LiveServer

T = TypeVar("T")

X = np.array([[0.0, 0.2], [0.1, 0.0], [0.3, 0.1], [1.0, 0.9], [0.9, 1.2], [1.1, 1.0]])
Y = np.array([0, 0, 0, 1, 1, 1])


def _in_database(server: LiveServer, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        database = Database(server.database_url)
        try:
            async with database.session(read_only=True) as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _fit() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


def _log_model(model: LogisticRegression, **options: Any) -> ModelInfo:
    """`mlflow.sklearn.log_model` exactly as a user calls it (default serialization)."""
    info: ModelInfo = mlflow.sklearn.log_model(model, **options)
    return info


def test_log_model_registers_it_and_every_uri_loads_the_same_predictions(
    client: MlflowClient, server: LiveServer
) -> None:
    classifier = _fit()
    expected = classifier.predict(X)
    name = "churn-classifier"
    experiment_id = mlflow.set_experiment("Logged models").experiment_id
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        info = _log_model(classifier, name="model", registered_model_name=name, input_example=X[:2])
    assert info.model_id.startswith("m-")
    assert str(info.registered_model_version) == "1"

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(by_alias.predict(X)) == list(expected)
    by_version = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert list(by_version.predict(X)) == list(expected)
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert list(by_run.predict(X)) == list(expected)
    by_id = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
    assert list(by_id.predict(X)) == list(expected)
    native = mlflow.sklearn.load_model(f"models:/{info.model_id}")
    assert list(native.predict(X)) == list(expected)

    logged = client.get_logged_model(info.model_id)
    assert logged.status == LoggedModelStatus.READY
    assert (logged.name, logged.experiment_id, logged.source_run_id) == (
        "model",
        experiment_id,
        run.info.run_id,
    )
    assert logged.artifact_location == (
        f"mlflow-artifacts:/{experiment_id}/models/{info.model_id}/artifacts"
    )
    assert logged.params["C"] == "1.0"
    outputs = client.get_run(run.info.run_id).outputs
    assert outputs is not None
    assert [output.model_id for output in outputs.model_outputs] == [info.model_id]


def test_the_logged_models_files_are_its_own_package(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = mlflow.set_experiment("Logged model package").experiment_id
    with mlflow.start_run():
        info = _log_model(_fit(), name="model")
    listed = {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "model.skops", "requirements.txt"} <= listed

    async def recorded(session: AsyncSession) -> tuple[Model, Package, list[str]]:
        project = await projects.get_default_project(session)
        model = await models.get_model(session, project=project, iid=int(experiment_id))
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=info.model_id
        )
        package = await packages.logged_model_package(session, logged_model=logged_model)
        files = await packages.list_files(session, package=package)
        return model, package, [file.path for file in files]

    model, package, paths = _in_database(server, recorded)
    assert package.package_type is PackageType.ML_MODEL
    assert (package.name, package.version) == (model.name, info.model_id)
    assert set(paths) == listed
    # The run's own package holds none of them: runs:/<run>/model finds the logged model.
    assert client.list_artifacts(info.run_id) == []


def test_logged_models_are_searched_tagged_and_deleted(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = mlflow.set_experiment("Logged model lifecycle").experiment_id
    with mlflow.start_run() as run:
        first = _log_model(_fit(), name="first")
        second = _log_model(_fit(), name="second", model_type="classifier")

    found = client.search_logged_models([experiment_id], filter_string="name = 'first'")
    assert [m.model_id for m in found] == [first.model_id]
    typed = client.search_logged_models(
        [experiment_id],
        filter_string=f"model_type = 'classifier' AND source_run_id = '{run.info.run_id}'",
    )
    assert [m.model_id for m in typed] == [second.model_id]
    newest_first = client.search_logged_models([experiment_id])
    assert [m.model_id for m in newest_first] == [second.model_id, first.model_id]
    by_name = client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "name", "ascending": True}]
    )
    assert [m.name for m in by_name] == ["first", "second"]
    page = client.search_logged_models([experiment_id], max_results=1)
    assert len(page) == 1 and page.token
    rest = client.search_logged_models([experiment_id], max_results=1, page_token=page.token)
    assert [m.model_id for m in rest] == [first.model_id]
    ready = client.search_logged_models([experiment_id], filter_string="status = 'READY'")
    assert len(ready) == 2
    for bad_filter in ("metrics.accuracy > 'high'", "name = 'a' OR name = 'b'", "flavor = 'x'"):
        with pytest.raises(RestException) as raised:
            client.search_logged_models([experiment_id], filter_string=bad_filter)
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE", bad_filter

    client.set_logged_model_tags(first.model_id, {"team": "growth", "stage": "dev"})
    client.delete_logged_model_tag(first.model_id, "stage")
    mlflow.log_model_params({"threshold": "0.5"}, model_id=first.model_id)
    tagged = client.get_logged_model(first.model_id)
    assert tagged.tags["team"] == "growth"
    assert "stage" not in tagged.tags
    assert tagged.params["threshold"] == "0.5"
    with pytest.raises(RestException) as raised:
        mlflow.log_model_params({"threshold": "0.9"}, model_id=first.model_id)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"

    failed = client.finalize_logged_model(second.model_id, LoggedModelStatus.FAILED)
    assert failed.status == LoggedModelStatus.FAILED

    client.delete_logged_model(first.model_id)
    with pytest.raises(MlflowException) as missing:
        client.get_logged_model(first.model_id)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    remaining = client.search_logged_models([experiment_id])
    assert [m.model_id for m in remaining] == [second.model_id]


def test_a_logged_model_without_a_run_holds_its_own_artifacts(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = mlflow.set_experiment("Runless models").experiment_id
    info = _log_model(_fit(), name="standalone")
    assert info.run_id is None
    logged = client.get_logged_model(info.model_id)
    assert not logged.source_run_id
    assert logged.experiment_id == experiment_id
    loaded = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
    assert list(loaded.predict(X)) == list(_fit().predict(X))
    # Its artifact directory listing answers as MLflow does.
    response = httpx.get(
        f"{server.url}/api/2.0/mlflow/logged-models/{info.model_id}/artifacts/directories",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    body = response.json()
    assert body["root_uri"] == logged.artifact_location
    first = body["files"][0]
    assert (first["path"], first["is_dir"], first["file_size"] > 0) == ("MLmodel", False, True)
