"""MLflow's small storage and protocol rules, with the real `mlflow` client against a live
modelreg: the version a client reads, long params, run search by dataset inputs, and an
experiment's artifact location."""

from __future__ import annotations

import re
import uuid

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Param
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.rest_store import RestStore
from mlflow.utils.server_info import fetch_server_info
from packaging.version import Version

import app
from tests.live_server import LiveServer

CONTEXT = "mlflow.data.context"


def _store(client: MlflowClient) -> RestStore:
    store = client._tracking_client.store
    assert isinstance(store, RestStore)
    return store


def _experiment(client: MlflowClient) -> str:
    experiment_id: str = client.create_experiment(f"parity {uuid.uuid4().hex[:12]}")
    return experiment_id


# --- /version and server-info --------------------------------------------------------------


def test_the_client_reads_the_mlflow_version_whose_api_is_implemented(
    client: MlflowClient, server: LiveServer
) -> None:
    store = _store(client)
    version = RestStore._get_server_version(store.get_host_creds())
    # The client gates MLflow 3 calls (log_spans needs 3.4) on this version.
    assert version is not None
    assert version >= Version("3.4")

    info = fetch_server_info(store.get_host_creds())
    assert info.status_code == 200
    assert info.data is not None
    assert info.data["mlflow_version"] == str(version)
    assert info.data["modelreg_version"] == app.__version__
    assert info.data["store_type"] == "SqlStore"
    # Workspaces are projects (tests/mlflow/test_mlflow_workspaces.py).
    assert info.data["workspaces_enabled"] is True
    assert info.data["presigned_upload_run_id_supported"] is False

    answer = httpx.get(f"{server.url}/version")
    assert answer.text == str(version)
    assert answer.headers["X-Modelreg-Version"] == app.__version__


# --- Params over 6,000 characters ----------------------------------------------------------


def test_a_long_param_is_stored_as_its_first_6000_characters(client: MlflowClient) -> None:
    run = client.create_run(_experiment(client))
    run_id = run.info.run_id
    single = "a" * 6000 + "b" * 1000
    batched = "c" * 6000 + "d" * 1000
    client.log_param(run_id, "single", single)
    client.log_batch(run_id, params=[Param("batched", batched), Param("short", "s")])
    # The same long value again is the same stored value, no conflict (as in MLflow).
    client.log_param(run_id, "single", single)

    params = client.get_run(run_id).data.params
    assert params == {"single": "a" * 6000, "batched": "c" * 6000, "short": "s"}


def test_a_truncated_param_still_refuses_a_different_value(client: MlflowClient) -> None:
    run_id = client.create_run(_experiment(client)).info.run_id
    client.log_param(run_id, "p", "x" * 7000)
    with pytest.raises(MlflowException) as refused:
        client.log_param(run_id, "p", "y")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params == {"p": "x" * 6000}


# --- search_runs by dataset ----------------------------------------------------------------


def _dataset_input(name: str, digest: str, context: str | None) -> DatasetInput:
    tags = [InputTag(CONTEXT, context)] if context is not None else []
    dataset = Dataset(name=name, digest=digest, source_type="local", source='{"uri": "x"}')
    return DatasetInput(dataset, tags=tags)


def test_runs_are_searched_by_their_dataset_inputs(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = _experiment(client)
    runs: dict[str, str] = {}
    for label in ("train_x", "eval_y", "both", "untagged", "none"):
        runs[label] = client.create_run(experiment_id, run_name=label).info.run_id
    client.log_inputs(runs["train_x"], [_dataset_input("x", "d1", "training")])
    client.log_inputs(runs["eval_y"], [_dataset_input("y", "d2", "eval")])
    client.log_inputs(
        runs["both"],
        [_dataset_input("x", "d1", "training"), _dataset_input("Z", "d3", "eval")],
    )
    client.log_inputs(runs["untagged"], [_dataset_input("w", "d4", None)])
    by_id = {run_id: label for label, run_id in runs.items()}

    def found(filter_string: str) -> set[str]:
        rows = client.search_runs([experiment_id], filter_string=filter_string)
        return {by_id[row.info.run_id] for row in rows}

    assert found("dataset.name = 'x'") == {"train_x", "both"}
    assert found("datasets.name = 'y'") == {"eval_y"}
    assert found("dataset.name IN ('y', 'w')") == {"eval_y", "untagged"}
    assert found("dataset.name NOT IN ('x', 'y')") == {"both", "untagged"}
    # As MLflow's inner join: any dataset input whose name differs.
    assert found("dataset.name != 'x'") == {"eval_y", "both", "untagged"}
    assert found("dataset.name LIKE 'z'") == set()
    assert found("dataset.name ILIKE 'z'") == {"both"}
    assert found("dataset.digest = 'd2'") == {"eval_y"}
    assert found("dataset.digest LIKE 'd%' AND dataset.name = 'w'") == {"untagged"}
    assert found("dataset.context = 'training'") == {"train_x", "both"}
    assert found("dataset.context = 'eval'") == {"eval_y", "both"}
    assert found("dataset.context LIKE 'ev%'") == {"eval_y", "both"}
    assert found("dataset.context IN ('training', 'other')") == {"train_x", "both"}
    assert found("dataset.context != 'training'") == {"eval_y", "both"}
    assert found("dataset.name = 'x' AND dataset.context = 'eval'") == {"both"}
    assert found("dataset.name = 'x' AND params.p = '1'") == set()


@pytest.mark.parametrize(
    "dataset_input",
    [
        {"dataset": {"name": "odd", "digest": "d5"}, "tags": "training"},
        {"dataset": {"name": "odd", "digest": "d5"}, "tags": ["training", 3]},
        {"dataset": {"name": "odd", "digest": "d5"}, "tags": [{"key": CONTEXT, "value": 3}]},
        {"dataset": {"name": "odd", "digest": 5}},
    ],
)
def test_a_dataset_input_that_breaks_mlflows_schema_is_refused_and_nothing_stored(
    server: LiveServer, client: MlflowClient, dataset_input: dict[str, object]
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    api = f"{server.url}/api/2.0/mlflow"
    experiment_id = _experiment(client)
    run_id = client.create_run(experiment_id).info.run_id

    logged = httpx.post(
        f"{api}/runs/log-inputs",
        headers=headers,
        json={"run_id": run_id, "datasets": [dataset_input]},
    )

    assert logged.status_code == 400, logged.text
    assert logged.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # The client reads the run back (a stored malformed input would break its parsing).
    inputs = client.get_run(run_id).inputs
    assert inputs is None or inputs.dataset_inputs == []
    assert client.search_runs([experiment_id], "dataset.name = 'odd'") == []


def test_an_unknown_dataset_key_is_refused(client: MlflowClient) -> None:
    experiment_id = _experiment(client)
    with pytest.raises(MlflowException) as refused:
        client.search_runs([experiment_id], filter_string="dataset.source = 'x'")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


# --- artifact_location on experiments/create -----------------------------------------------


@pytest.mark.parametrize(
    "location", ["s3://x", "/tmp/elsewhere", "file:///data", "mlflow-artifacts:/elsewhere"]
)
def test_a_foreign_artifact_location_is_refused_and_nothing_is_created(
    client: MlflowClient, location: str
) -> None:
    name = f"located {uuid.uuid4().hex[:12]}"
    with pytest.raises(MlflowException) as refused:
        client.create_experiment(name, artifact_location=location)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "artifact_location" in refused.value.message
    assert client.get_experiment_by_name(name) is None


def test_the_location_the_server_assigns_may_be_named(client: MlflowClient) -> None:
    name = f"named {uuid.uuid4().hex[:12]}"
    with pytest.raises(MlflowException) as refused:
        client.create_experiment(name, artifact_location="s3://x")
    assigned = re.search(r"'(mlflow-artifacts:/\d+)'", refused.value.message)
    assert assigned is not None
    # The refused creation took nothing, not even its id: the same one is assigned again.
    experiment_id = client.create_experiment(name, artifact_location=assigned.group(1))
    assert client.get_experiment(experiment_id).artifact_location == assigned.group(1)


def test_a_non_string_artifact_location_is_refused(server: LiveServer) -> None:
    name = f"typed {uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    answer = httpx.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        headers=headers,
        json={"name": name, "artifact_location": 9.0},
    )
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    found = httpx.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        headers=headers,
        params={"experiment_name": name},
    )
    assert found.status_code == 404


@pytest.mark.parametrize("location", [None, ""])
def test_a_default_create_still_works(client: MlflowClient, location: str | None) -> None:
    name = f"default {uuid.uuid4().hex[:12]}"
    experiment_id = client.create_experiment(name, artifact_location=location)
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == name
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert mlflow.set_experiment(name).experiment_id == experiment_id
