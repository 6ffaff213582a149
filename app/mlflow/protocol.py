"""MLflow's JSON shapes (service.proto, model_registry.proto), rendered from our rows."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from app.models import Candidate, LifecycleState, Model, ModelVersion
from app.services.candidates import MetricPoint

LIFECYCLE = {LifecycleState.ACTIVE: "active", LifecycleState.DELETED: "deleted"}


def milliseconds(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def double(value: float) -> float | str:
    """Protobuf's JSON for doubles: NaN and the infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def key_values(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in items.items()]


def experiment_artifact_location(model: Model) -> str:
    return f"mlflow-artifacts:/{model.iid}"


def run_artifact_uri(model_iid: int, candidate: Candidate) -> str:
    return f"mlflow-artifacts:/{model_iid}/{candidate.eid}/artifacts"


# Where a logged model's files live under its experiment (MLflow's layout).
LOGGED_MODELS_DIRECTORY = "models"


def logged_model_artifact_uri(model_iid: int, model_id: str) -> str:
    return f"mlflow-artifacts:/{model_iid}/{LOGGED_MODELS_DIRECTORY}/{model_id}/artifacts"


def experiment(model: Model, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "experiment_id": str(model.iid),
        "name": model.display_name,
        "artifact_location": experiment_artifact_location(model),
        "lifecycle_stage": LIFECYCLE.get(model.state, "deleted"),
        "last_update_time": milliseconds(model.updated_at),
        "creation_time": milliseconds(model.created_at),
        "tags": key_values(tags),
    }


def metric(point: MetricPoint, *, run_id: str | None = None) -> dict[str, Any]:
    """MLflow's Metric message: the logged model, dataset and run only when known."""
    rendered: dict[str, Any] = {
        "key": point.name,
        "value": double(point.value),
        "timestamp": point.timestamp,
        "step": point.step,
    }
    link = {
        "model_id": point.logged_model_eid,
        "dataset_name": point.dataset_name,
        "dataset_digest": point.dataset_digest,
        "run_id": run_id,
    }
    rendered.update({field: value for field, value in link.items() if value})
    return rendered


def run_info(candidate: Candidate, model_iid: int, username: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": candidate.eid,
        "run_uuid": candidate.eid,
        "run_name": candidate.name or "",
        "experiment_id": str(model_iid),
        "user_id": username or "",
        "status": candidate.status.value,
        "start_time": candidate.start_time,
        "artifact_uri": run_artifact_uri(model_iid, candidate),
        "lifecycle_stage": LIFECYCLE.get(candidate.state, "deleted"),
    }
    if candidate.end_time is not None:
        info["end_time"] = candidate.end_time
    return info


def run(
    candidate: Candidate,
    *,
    model_iid: int,
    username: str | None,
    params: dict[str, str],
    tags: dict[str, str],
    metrics: list[MetricPoint],
    inputs: dict[str, Any],
    outputs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "info": run_info(candidate, model_iid, username),
        "data": {
            "metrics": [metric(point) for point in metrics],
            "params": key_values(params),
            "tags": key_values(tags),
        },
        "inputs": inputs,
        "outputs": outputs,
    }


def model_version(
    version: ModelVersion,
    *,
    model: Model,
    run_id: str | None,
    tags: dict[str, str],
    aliases: list[str],
    username: str | None,
) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "name": model.display_name,
        "version": str(version.number),
        "creation_timestamp": milliseconds(version.created_at),
        "last_updated_timestamp": milliseconds(version.updated_at),
        "current_stage": version.stage.value,
        "description": version.description or "",
        "source": version.source or "",
        "status": version.status.value,
        "tags": key_values(tags),
        "aliases": aliases,
        "user_id": username or "",
    }
    if run_id is not None:
        rendered["run_id"] = run_id
    return rendered
