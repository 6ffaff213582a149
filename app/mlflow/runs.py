"""MLflow runs: our candidates, addressed by their external id (the run id)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidValueError, NotFoundError
from app.mlflow import protocol
from app.mlflow.call import (
    Call,
    Endpoint,
    MissingParameterError,
    parse_double,
    value_string,
    view_states,
)
from app.mlflow.experiments import experiment_iid, find_experiment
from app.models import (
    Candidate,
    CandidateStatus,
    Project,
)
from app.search import paging
from app.services import candidates, users, validation
from app.services.candidates import MetricPoint
from app.services.policy import Operation

RUN_NAME_TAG = "mlflow.runName"
HISTORY_PAGE_DEFAULT = 25_000
HISTORY_PAGE_MAX = 100_000


async def find_run(
    session: AsyncSession, project: Project, run_id: str, *, include_deleted: bool = True
) -> Candidate:
    try:
        return await candidates.get_candidate(
            session, project=project, eid=run_id, include_deleted=include_deleted
        )
    except NotFoundError:
        raise NotFoundError(f"Run '{run_id}' not found", field="run_id") from None


async def render(session: AsyncSession, rows: list[Candidate]) -> list[dict[str, Any]]:
    """Runs as MLflow renders them, with one query per kind of data for all of them."""
    ids = [row.id for row in rows]
    model_iids = await candidates.model_iids(session, model_ids={row.model_id for row in rows})
    usernames = await users.usernames(
        session, user_ids={row.user_id for row in rows if row.user_id is not None}
    )
    params = await candidates.params_of(session, candidate_ids=ids)
    tags = await candidates.metadata_of(session, candidate_ids=ids)
    metrics = await candidates.get_latest_metrics_of(session, candidate_ids=ids)
    inputs = await candidates.get_inputs_of(session, candidate_ids=ids)
    rendered = []
    for row in rows:
        run_tags = {**tags[row.id], RUN_NAME_TAG: row.name or ""}
        dataset_inputs = [i.payload for i in inputs[row.id] if i.kind == "dataset_input"]
        model_inputs = [i.payload for i in inputs[row.id] if i.kind == "model_input"]
        model_outputs = [i.payload for i in inputs[row.id] if i.kind == "model_output"]
        rendered.append(
            protocol.run(
                row,
                model_iid=model_iids[row.model_id],
                username=usernames.get(row.user_id) if row.user_id is not None else None,
                params=params[row.id],
                tags=run_tags,
                metrics=metrics[row.id],
                inputs={"dataset_inputs": dataset_inputs, "model_inputs": model_inputs},
                outputs={"model_outputs": model_outputs},
            )
        )
    return rendered


def _status(value: str | None) -> CandidateStatus | None:
    if value is None:
        return None
    try:
        return CandidateStatus(value)
    except ValueError:
        raise InvalidValueError(
            f"Invalid run status '{value}': one of {', '.join(s.value for s in CandidateStatus)}",
            field="status",
        ) from None


def _split_run_name(tags: list[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """The run name travels as the `mlflow.runName` tag too; it lives in one place."""
    name = None
    rest = []
    for key, value in tags:
        if key == RUN_NAME_TAG:
            name = value
        else:
            rest.append((key, value))
    return name, rest


async def create(call: Call) -> dict[str, Any]:
    experiment_id = call.string("experiment_id", default="0") or "0"
    name_tag, tags = _split_run_name(call.key_values("tags"))
    run_name = call.string("run_name") or name_tag
    start_time = call.integer("start_time")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        candidate = await candidates.create_candidate(
            session,
            model=model,
            name=run_name,
            start_time=start_time,
            metadata=dict(tags),
            actor=call.actor,
        )
    # Rendered from what was just written: a new run has its tags and nothing else yet.
    run = protocol.run(
        candidate,
        model_iid=model.iid,
        username=call.actor.username if call.actor else None,
        params={},
        tags={**dict(tags), RUN_NAME_TAG: candidate.name or ""},
        metrics=[],
        inputs={"dataset_inputs": [], "model_inputs": []},
        outputs={"model_outputs": []},
    )
    return {"run": run}


async def get(call: Call) -> dict[str, Any]:
    run_id = call.string("run_id") or call.string("run_uuid")
    if run_id is None:
        raise MissingParameterError("run_id")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        [run] = await render(session, [candidate])
    return {"run": run}


async def update(call: Call) -> dict[str, Any]:
    run_id = call.string("run_id") or call.string("run_uuid")
    if run_id is None:
        raise MissingParameterError("run_id")
    status = _status(call.string("status"))
    end_time = call.integer("end_time")
    run_name = call.string("run_name")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        await candidates.update_candidate(
            session,
            candidate=candidate,
            name=run_name,
            status=status,
            end_time=end_time,
            actor=call.actor,
        )
        model_iids = await candidates.model_iids(session, model_ids=[candidate.model_id])
    return {
        "run_info": protocol.run_info(
            candidate,
            model_iids.get(candidate.model_id, 0),
            call.actor.username if call.actor else None,
        )
    }


async def delete(call: Call) -> dict[str, Any]:
    run_id = call.required("run_id")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id, include_deleted=False)
        await candidates.delete_candidate(session, candidate=candidate, actor=call.actor)
    return {}


async def restore(call: Call) -> dict[str, Any]:
    run_id = call.required("run_id")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        await candidates.restore_candidate(session, candidate=candidate, actor=call.actor)
    return {}


def _metric(entry: dict[str, Any], label: str = "metrics") -> MetricPoint:
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise MissingParameterError(f"{label}.key" if label else "key")
    if entry.get("value") is None:
        raise MissingParameterError(f"{label}.value" if label else "value")
    timestamp, step = entry.get("timestamp"), entry.get("step", 0)
    if timestamp is None:
        raise MissingParameterError(f"{label}.timestamp" if label else "timestamp")
    return MetricPoint(
        name=key,
        value=parse_double("value", entry["value"]),
        timestamp=validation.int64(timestamp, field=f"{label}.timestamp" if label else "timestamp"),
        step=validation.int64(step or 0, field=f"{label}.step" if label else "step"),
        logged_model_eid=_optional_string(entry, "model_id", label),
        dataset_name=_optional_string(entry, "dataset_name", label),
        dataset_digest=_optional_string(entry, "dataset_digest", label),
    )


def _optional_string(entry: dict[str, Any], name: str, label: str) -> str | None:
    """A string field of a metric; empty counts as absent, as in protobuf."""
    value = entry.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        field = f"{label}.{name}" if label else name
        raise InvalidValueError(
            f"Invalid value {json.dumps(value)[:100]} for parameter '{field}' supplied: "
            "expected a string",
            field=field,
        )
    return value


async def _log(
    call: Call,
    *,
    metrics: Sequence[MetricPoint] = (),
    params: Sequence[tuple[str, str]] = (),
    tags: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    run_id = call.string("run_id") or call.string("run_uuid")
    if run_id is None:
        raise MissingParameterError("run_id")
    run_name, other_tags = _split_run_name(list(tags))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        # MLflow's server stores the first 6,000 characters of a longer param value.
        await candidates.log_batch(
            session,
            candidate=candidate,
            metrics=metrics,
            params=params,
            tags=other_tags,
            truncate_long_params=True,
            actor=call.actor,
        )
        if run_name is not None:
            await candidates.update_candidate(
                session, candidate=candidate, name=run_name, actor=call.actor
            )
    return {}


async def log_metric(call: Call) -> dict[str, Any]:
    return await _log(call, metrics=[_metric(call.params, label="")])


async def log_param(call: Call) -> dict[str, Any]:
    key = call.required("key")
    value = call.params.get("value")
    if value is None:
        raise MissingParameterError("value")
    return await _log(call, params=[(key, value_string("value", value))])


async def set_tag(call: Call) -> dict[str, Any]:
    key = call.required("key")
    value = call.string("value", default="") or ""
    return await _log(call, tags=[(key, value)])


async def log_batch(call: Call) -> dict[str, Any]:
    return await _log(
        call,
        metrics=[_metric(entry) for entry in call.objects("metrics")],
        params=call.key_values("params"),
        tags=call.key_values("tags"),
    )


async def delete_tag(call: Call) -> dict[str, Any]:
    run_id = call.required("run_id")
    key = call.required("key")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        await candidates.delete_metadata(session, candidate=candidate, name=key, actor=call.actor)
    return {}


# The string fields of MLflow's Dataset message; a client fails to read back a run whose
# stored input breaks its schema, so such an input is refused when it is logged.
_DATASET_TEXT_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")


def _refuse_malformed_dataset_input(dataset_input: dict[str, Any], dataset: dict[str, Any]) -> None:
    for field in _DATASET_TEXT_FIELDS:
        if not isinstance(dataset.get(field, ""), str):
            raise InvalidValueError(
                f"Invalid value for parameter 'datasets.dataset.{field}': expected a string",
                field=f"datasets.dataset.{field}",
            )
    tags = dataset_input.get("tags", [])
    if not isinstance(tags, list) or not all(
        isinstance(tag, dict)
        and isinstance(tag.get("key"), str)
        and isinstance(tag.get("value", ""), str)
        for tag in tags
    ):
        raise InvalidValueError(
            "Invalid value for parameter 'datasets.tags': expected a list of "
            "{key, value} objects with string keys and values",
            field="datasets.tags",
        )


async def log_inputs(call: Call) -> dict[str, Any]:
    run_id = call.required("run_id")
    entries: list[tuple[str, str, dict[str, Any]]] = []
    for dataset_input in call.objects("datasets"):
        dataset = dataset_input.get("dataset")
        if not isinstance(dataset, dict) or not dataset.get("name"):
            raise MissingParameterError("datasets.dataset.name")
        _refuse_malformed_dataset_input(dataset_input, dataset)
        key = f"{dataset.get('name')}:{dataset.get('digest', '')}"
        entries.append(("dataset_input", key, dataset_input))
    for model_input in call.objects("models"):
        if not model_input.get("model_id"):
            raise MissingParameterError("models.model_id")
        entries.append(("model_input", str(model_input["model_id"]), model_input))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        await candidates.record_inputs(
            session, candidate=candidate, entries=entries, actor=call.actor
        )
    return {}


async def log_outputs(call: Call) -> dict[str, Any]:
    run_id = call.required("run_id")
    entries: list[tuple[str, str, dict[str, Any]]] = []
    for output in call.objects("models"):
        if not output.get("model_id"):
            raise MissingParameterError("models.model_id")
        entries.append(("model_output", f"{output['model_id']}:{output.get('step', 0)}", output))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        await candidates.record_inputs(
            session, candidate=candidate, entries=entries, actor=call.actor
        )
    return {}


async def metric_history(call: Call) -> dict[str, Any]:
    run_id = call.string("run_id") or call.string("run_uuid")
    if run_id is None:
        raise MissingParameterError("run_id")
    key = call.required("metric_key")
    page = call.page(default=HISTORY_PAGE_DEFAULT, threshold=HISTORY_PAGE_MAX)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        points = await candidates.get_metric_history(
            session, candidate=candidate, name=key, limit=page.size + 1, offset=page.offset
        )
    shown, token = page.split(points)
    body: dict[str, Any] = {"metrics": [protocol.metric(point) for point in shown]}
    if token:
        body["next_page_token"] = token
    return body


async def metric_history_bulk_interval(call: Call) -> dict[str, Any]:
    run_ids = call.strings("run_ids")
    if not run_ids:
        raise MissingParameterError("run_ids")
    key = call.required("metric_key")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        sampled = await candidates.sample_metric_history(
            session,
            project=project,
            eids=run_ids,
            name=key,
            max_points=call.integer("max_results", default=candidates.MAX_SAMPLED_POINTS) or 0,
            start_step=call.integer("start_step"),
            end_step=call.integer("end_step"),
        )
    return {
        "metrics": [
            protocol.metric(point, run_id=run_id) for run_id, points in sampled for point in points
        ]
    }


async def search(call: Call) -> dict[str, Any]:
    experiment_ids = call.strings("experiment_ids")
    states = view_states(call, "run_view_type")
    page = call.page(
        default=paging.SEARCH_MAX_RESULTS_DEFAULT,
        threshold=paging.SEARCH_MAX_RESULTS_THRESHOLD,
    )
    run_filter = candidates.RunFilter.parse(call.string("filter"))
    iids = [experiment_iid(value) for value in experiment_ids]
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        rows = await candidates.search_runs(
            session,
            project=project,
            experiment_iids=iids,
            states=states,
            filter=run_filter,
            order_by=call.strings("order_by"),
            page=page,
        )
        shown, token = page.split(rows)
        body: dict[str, Any] = {"runs": await render(session, list(shown))}
    if token:
        body["next_page_token"] = token
    return body


ENDPOINTS: list[Endpoint] = [
    ("POST", "/mlflow/runs/create", create),
    ("GET", "/mlflow/runs/get", get),
    ("POST", "/mlflow/runs/update", update),
    ("POST", "/mlflow/runs/delete", delete),
    ("POST", "/mlflow/runs/restore", restore),
    ("POST", "/mlflow/runs/log-metric", log_metric),
    ("POST", "/mlflow/runs/log-parameter", log_param),
    ("POST", "/mlflow/runs/log-batch", log_batch),
    ("POST", "/mlflow/runs/set-tag", set_tag),
    ("POST", "/mlflow/runs/delete-tag", delete_tag),
    ("POST", "/mlflow/runs/search", search),
    ("POST", "/mlflow/runs/log-inputs", log_inputs),
    ("POST", "/mlflow/runs/outputs", log_outputs),
    ("GET", "/mlflow/metrics/get-history", metric_history),
    ("GET", "/mlflow/metrics/get-history-bulk-interval", metric_history_bulk_interval),
]
