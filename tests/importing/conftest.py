"""A real MLflow tracking server (3.17, in a venv of its own) for the import tests, fed
once per module by the real `mlflow` client: several experiments, nested runs, a
10,000-step history with NaN and infinities, a dataset input, artifacts in directories,
deleted runs and experiments, and a sklearn model logged twice and registered with an
alias and a stage.

The MLflow venv lives under `.venv/servers/` and is created by the first session that
needs it (about a minute with a warm pip cache), then reused while its requirement is
unchanged.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.servers import REPO, mlflow_server

MLFLOW_VENVS = REPO / ".venv" / "servers"
MODELREG = str(Path(sys.executable).with_name("modelreg"))
IMPORT_TIMEOUT = 600.0
HISTORY_STEPS = 10_000
REGISTERED_MODEL = "iris-classifier"
ALIAS = "champion"


@dataclass(frozen=True)
class MlflowSource:
    """The running source server and what was logged to it."""

    url: str
    long_run_id: str
    parent_run_id: str
    child_run_ids: tuple[str, ...]
    deleted_run_id: str
    artifact_run_id: str
    artifact_files: dict[str, bytes]
    run_ids: tuple[str, ...]
    features: list[list[float]]
    predictions: list[int]


def loss(step: int) -> float:
    """The long history: NaN every 997 steps, +inf at 5000, -inf at 5001 (which MLflow's
    store keeps as the largest and smallest floats)."""
    if step % 997 == 0:
        return math.nan
    if step == 5000:
        return math.inf
    if step == 5001:
        return -math.inf
    return 1.0 / (step + 1)


def _populate(url: str, workdir: Path) -> MlflowSource:
    import mlflow
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
    from sklearn.linear_model import LogisticRegression

    client = mlflow.MlflowClient(url)
    alpha = client.create_experiment("alpha", tags={"team": "vision"})
    beta = client.create_experiment("beta")
    gamma = client.create_experiment("gamma")

    parent = client.create_run(alpha, run_name="sweep", tags={"kind": "parent"})
    parent_id = parent.info.run_id
    children = []
    for trial in range(2):
        child = client.create_run(
            alpha, run_name=f"trial-{trial}", tags={"mlflow.parentRunId": parent_id}
        )
        client.log_batch(
            child.info.run_id,
            params=[Param("lr", str(0.1 * (trial + 1))), Param("layers", "3")],
            metrics=[Metric("accuracy", 0.5 + trial / 10, 1_700_000_000_000, 0)],
            tags=[RunTag("trial", str(trial))],
        )
        client.set_terminated(child.info.run_id)
        children.append(child.info.run_id)
    client.set_terminated(parent_id)

    long_run = client.create_run(alpha, run_name="long")
    long_id = long_run.info.run_id
    for start in range(0, HISTORY_STEPS, 1000):
        client.log_batch(
            long_id,
            metrics=[
                Metric("loss", loss(step), 1_700_000_000_000 + step, step)
                for step in range(start, start + 1000)
            ],
        )
    client.log_inputs(
        long_id,
        datasets=[
            DatasetInput(
                Dataset("iris", "d1g3st", "local", "file:///data/iris.csv"),
                [InputTag("mlflow.data.context", "training")],
            )
        ],
    )
    client.set_terminated(long_id, status="FAILED")

    files = {
        "notes.md": b"# trained on iris\n",
        "data/table.csv": b"a,b\n1,2\n",
        "data/deep/blob.bin": random.Random(7).randbytes(3 * 1024 * 1024 + 5),
    }
    local = workdir / "artifacts-to-log"
    for path, body in files.items():
        (local / path).parent.mkdir(parents=True, exist_ok=True)
        (local / path).write_bytes(body)
    artifact_run = client.create_run(beta, run_name="with-files")
    client.log_artifacts(artifact_run.info.run_id, str(local))
    client.set_terminated(artifact_run.info.run_id)

    deleted = client.create_run(beta, run_name="abandoned")
    client.log_param(deleted.info.run_id, "why", "bad data")
    client.delete_run(deleted.info.run_id)

    gone = client.create_run(gamma, run_name="in-a-deleted-experiment")
    client.set_terminated(gone.info.run_id)
    client.delete_experiment(gamma)

    features = [[0.0, 0.1], [1.0, 0.9], [0.2, 0.0], [0.9, 1.0]]
    labels = [0, 1, 0, 1]
    mlflow.set_tracking_uri(url)
    trained = []
    for c in (1.0, 0.5):
        with mlflow.start_run(experiment_id=beta, run_name=f"train-c{c}") as run:
            mlflow.log_param("C", str(c))
            estimator = LogisticRegression(C=c).fit(features, labels)
            mlflow.sklearn.log_model(
                estimator, name="model", registered_model_name=REGISTERED_MODEL
            )
            trained.append(run.info.run_id)
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, "1")
    client.set_model_version_tag(REGISTERED_MODEL, "1", "validated", "yes")
    client.update_model_version(REGISTERED_MODEL, "1", description="the first one")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still used
        client.transition_model_version_stage(REGISTERED_MODEL, "2", "Staging")
    champion = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{ALIAS}")
    predictions = [int(value) for value in champion.predict(features)]

    run_ids = (
        parent_id,
        *children,
        long_id,
        artifact_run.info.run_id,
        deleted.info.run_id,
        gone.info.run_id,
        *trained,
    )
    return MlflowSource(
        url=url,
        long_run_id=long_id,
        parent_run_id=parent_id,
        child_run_ids=tuple(children),
        deleted_run_id=deleted.info.run_id,
        artifact_run_id=artifact_run.info.run_id,
        artifact_files=files,
        run_ids=run_ids,
        features=features,
        predictions=predictions,
    )


@pytest.fixture(scope="module")
def mlflow_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowSource]:
    """MLflow 3.17's tracking server, proxying artifacts, filled as the module docstring
    says."""
    import mlflow

    workdir = tmp_path_factory.mktemp("mlflow-source")
    previous = mlflow.get_tracking_uri()
    with mlflow_server(workdir, MLFLOW_VENVS, workers=1, jobs=False) as server:
        try:
            yield _populate(server.url, workdir)
        finally:
            mlflow.set_tracking_uri(previous)


def run_import(
    source_url: str,
    *arguments: str,
    database_url: str,
    data_dir: Path,
    project: str = "default",
) -> subprocess.CompletedProcess[str]:
    """`modelreg import-mlflow` from the source into the project, as a process."""
    return subprocess.run(
        [MODELREG, "import-mlflow", "--from", source_url, "--project", project, *arguments],
        env=import_environment(database_url, data_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=False,
    )


def import_environment(database_url: str, data_dir: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODELREG_", "MLFLOW_"))
    }
    return environment | {"MODELREG_DATABASE_URL": database_url, "MODELREG_DATA_DIR": str(data_dir)}


def summary_of(output: str) -> dict[str, Any]:
    """The summary event, the last JSON line of `--json` output."""
    import json

    last: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    assert last["event"] == "summary", output[-2000:]
    return last
