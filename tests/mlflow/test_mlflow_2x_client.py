"""A smoke flow with an MLflow 2.x client, installed in an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from tests.live_server import LiveServer

MLFLOW_2 = "mlflow-skinny==2.22.*"
ENVIRONMENT = Path(sys.prefix) / "mlflow2-client"

SMOKE = textwrap.dedent(
    """
    import math, mlflow
    from mlflow import MlflowClient

    assert mlflow.__version__.startswith("2."), mlflow.__version__
    client = MlflowClient()
    experiment_id = client.create_experiment("Two point x")
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name="old-client") as run:
        mlflow.log_params({"lr": 0.1, "depth": 4})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("nan", math.nan)
        mlflow.set_tag("client", "2.x")
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"lr": "0.1", "depth": "4"}, fetched.data.params
    assert fetched.data.metrics["loss"] == 1.0 / 3
    assert math.isnan(fetched.data.metrics["nan"])
    found = client.search_runs([experiment_id], "params.depth = '4' and metrics.loss < 0.5")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2]
    client.create_registered_model("two-point-x-model")
    version = client.create_model_version(
        "two-point-x-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("two-point-x-model", "prod", version.version)
    by_alias = client.get_model_version_by_alias("two-point-x-model", "prod")
    assert by_alias.run_id == run.info.run_id
    print("smoke ok")
    """
)


def _mlflow2_python() -> Path:
    python = ENVIRONMENT / "bin" / "python"
    if not python.exists():
        venv.create(ENVIRONMENT, with_pip=True)
    check = subprocess.run(
        [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0 or not check.stdout.startswith("2."):
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", MLFLOW_2],
            check=True,
        )
    return python


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_an_mlflow_2_client_runs_the_tracking_and_registry_flow(
    server: LiveServer, tmp_path: Path
) -> None:
    python = _mlflow2_python()
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_TOKEN": server.admin_token,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    result = subprocess.run(
        [str(python), str(script)], env=environment, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke ok" in result.stdout
