"""`modelreg import-mlflow` against a real MLflow 3.17 server: what unchanged client code
reads after the move, an import killed midway and run again, and a second run."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from app.db import Database
from app.models import Candidate, LoggedModel, ModelVersion, PackageFile
from app.models.audit import AuditEvent
from tests.importing.conftest import (
    ALIAS,
    HISTORY_STEPS,
    MODELREG,
    REGISTERED_MODEL,
    MlflowSource,
    import_environment,
    run_import,
    summary_of,
)
from tests.live_server import LiveServer

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _same(left: float, right: float) -> bool:
    return (math.isnan(left) and math.isnan(right)) or left == right


def test_imported_runs_read_the_same_through_the_mlflow_client(
    mlflow_source: MlflowSource, server: LiveServer, client: MlflowClient, tmp_path: Path
) -> None:
    """`client` reads the modelreg server the import wrote to."""
    import mlflow

    result = run_import(
        mlflow_source.url,
        "--quiet",
        database_url=server.database_url,
        data_dir=server.log_path.parent / "data",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""

    source = mlflow.MlflowClient(mlflow_source.url)
    here = client
    for run_id in mlflow_source.run_ids:
        there_run, here_run = source.get_run(run_id), here.get_run(run_id)
        assert here_run.info.run_name == there_run.info.run_name
        assert here_run.info.status == there_run.info.status
        assert here_run.info.start_time == there_run.info.start_time
        assert here_run.info.end_time == there_run.info.end_time
        assert here_run.info.lifecycle_stage == there_run.info.lifecycle_stage
        assert here_run.data.params == there_run.data.params
        assert here_run.data.tags == there_run.data.tags
    assert here.get_run(mlflow_source.deleted_run_id).info.lifecycle_stage == "deleted"

    history = here.get_metric_history(mlflow_source.long_run_id, "loss")
    there_history = source.get_metric_history(mlflow_source.long_run_id, "loss")
    assert [point.step for point in history] == list(range(HISTORY_STEPS))
    assert [point.timestamp for point in history] == [p.timestamp for p in there_history]
    assert all(
        _same(mine.value, theirs.value) for mine, theirs in zip(history, there_history, strict=True)
    )
    # MLflow's store keeps NaN and turns the infinities into the largest floats.
    assert [p.step for p in history if math.isnan(p.value)] == list(range(0, HISTORY_STEPS, 997))
    assert history[5000].value == -history[5001].value == sys.float_info.max
    inputs = here.get_run(mlflow_source.long_run_id).inputs
    assert inputs is not None
    [dataset] = inputs.dataset_inputs
    assert (dataset.dataset.name, dataset.dataset.digest) == ("iris", "d1g3st")

    children = here.search_runs(
        [here.get_run(mlflow_source.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{mlflow_source.parent_run_id}'",
    )
    assert sorted(run.info.run_id for run in children) == sorted(mlflow_source.child_run_ids)

    downloaded = Path(
        mlflow.artifacts.download_artifacts(
            run_id=mlflow_source.artifact_run_id,
            dst_path=str(tmp_path / "download"),
            tracking_uri=server.url,
        )
    )
    for path, body in mlflow_source.artifact_files.items():
        assert (downloaded / path).read_bytes() == body

    champion = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{ALIAS}")
    assert [int(value) for value in champion.predict(mlflow_source.features)] == (
        mlflow_source.predictions
    )
    versions = {v.version: v for v in here.search_model_versions(f"name = '{REGISTERED_MODEL}'")}
    assert sorted(versions) == ["1", "2"]
    assert versions["1"].tags == {"validated": "yes"}
    assert versions["1"].description == "the first one"
    assert versions["2"].current_stage == "Staging"
    for number, version in versions.items():
        there_version = source.get_model_version(REGISTERED_MODEL, number)
        assert (version.source, version.run_id) == (there_version.source, there_version.run_id)


async def _counts(database_url: str) -> dict[str, int]:
    database = Database(database_url)
    try:
        async with database.session(read_only=True) as session:
            return {
                table.__name__: int(
                    await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
                )
                for table in (Candidate, LoggedModel, ModelVersion, PackageFile, AuditEvent)
            }
    finally:
        await database.dispose()


def _kill_once_runs_started(source_url: str, database_url: str, data_dir: Path) -> None:
    """Start an import and SIGKILL it as soon as it reports its first imported run."""
    process = subprocess.Popen(
        [MODELREG, "import-mlflow", "--from", source_url, "--project", "default", "--json"],
        env=import_environment(database_url, data_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["phase"] == "runs":
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


async def test_an_import_killed_midway_continues_and_ends_with_one_copy_of_everything(
    mlflow_source: MlflowSource, database_url: str, tmp_path: Path
) -> None:
    _kill_once_runs_started(mlflow_source.url, database_url, tmp_path / "data")
    killed = await _counts(database_url)
    assert killed["Candidate"] < len(mlflow_source.run_ids)

    resumed = run_import(
        mlflow_source.url,
        "--json",
        "--verify",
        database_url=database_url,
        data_dir=tmp_path / "data",
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    summary = summary_of(resumed.stdout)
    verification = summary["verify"]
    assert verification["differences"] == []
    assert verification["destination"] == verification["source"]
    assert verification["source"]["runs"] == len(mlflow_source.run_ids)
    assert verification["source"]["metric points"] == HISTORY_STEPS + 2
    assert verification["source"]["artifact files"] >= len(mlflow_source.artifact_files) + 2
    assert verification["source"]["model versions"] == 2
    assert verification["source"]["aliases"] == 1
    assert summary["import"]["skipped"] == {}
    after_resume = await _counts(database_url)
    assert after_resume["Candidate"] == len(mlflow_source.run_ids)
    assert after_resume["LoggedModel"] == 2
    assert after_resume["ModelVersion"] == 2

    again = run_import(
        mlflow_source.url, "--json", database_url=database_url, data_dir=tmp_path / "data"
    )
    assert again.returncode == 0, again.stderr
    assert summary_of(again.stdout)["import"]["written"] == {}
    assert await _counts(database_url) == after_resume


async def test_a_dry_run_counts_what_it_would_write_and_writes_nothing(
    mlflow_source: MlflowSource, database_url: str, tmp_path: Path
) -> None:
    before = await _counts(database_url)
    result = run_import(
        mlflow_source.url,
        "--json",
        "--dry-run",
        database_url=database_url,
        data_dir=tmp_path / "data",
    )
    assert result.returncode == 0, result.stderr
    written = summary_of(result.stdout)["import"]["written"]
    assert written["runs"] == len(mlflow_source.run_ids)
    assert written["model versions"] == 2
    assert written["logged models"] == 2
    assert await _counts(database_url) == before


@pytest.mark.parametrize("argument", ["--since=yesterday", "--experiments="])
def test_bad_arguments_are_one_line_errors(argument: str, tmp_path: Path) -> None:
    result = run_import(
        "http://127.0.0.1:9", argument, database_url="sqlite+aiosqlite:///x.db", data_dir=tmp_path
    )
    assert result.returncode == 2
    assert "import-mlflow" in result.stderr


def test_a_source_that_does_not_answer_is_a_one_line_error(
    database_url: str, tmp_path: Path
) -> None:
    result = run_import("http://127.0.0.1:9", database_url=database_url, data_dir=tmp_path)
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("modelreg: cannot read the MLflow server: POST http://127.0.0.1:9/")
