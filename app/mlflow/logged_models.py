"""MLflow 3's logged models, addressed by their model id ("m-" and 32 hex characters).

Their artifact URI is ``mlflow-artifacts:/<experiment id>/models/<model id>/artifacts``,
which the artifact proxy maps to the logged model's package (see `app.mlflow.artifacts`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app import http_bodies
from app.errors import InvalidValueError, NotFoundError
from app.mlflow import protocol
from app.mlflow.artifacts import checked_path, directory_listing
from app.mlflow.call import Call, Endpoint, MissingParameterError
from app.mlflow.experiments import experiment_iid, find_experiment
from app.mlflow.protocol import logged_model_artifact_uri
from app.mlflow.runs import find_run
from app.models import LoggedModel, Model
from app.search.grammar import (
    EQ,
    IN,
    NE,
    NOT_IN,
    Comparison,
    SearchSchema,
    attribute_specs,
    parse_filter,
)
from app.search.sql import CodepointOrder, epoch_ms_condition, string_condition
from app.services import candidates, logged_models
from app.services.logged_models import DatasetFilter
from app.services.policy import Operation

SEARCH_MAX_RESULTS_DEFAULT = 100
SEARCH_MAX_RESULTS_THRESHOLD = 1000

# LoggedModelStatus by its protobuf number.
STATUS_NUMBERS = {
    1: logged_models.PENDING,
    2: logged_models.READY,
    3: logged_models.UPLOAD_FAILED,
}

_STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})

# What a logged model search filters on: its attributes, its metrics (any point of the
# key, see `logged_models.metric_condition`), params and tags, as MLflow's
# `mlflow/utils/search_logged_model_utils.py` parses them.
LOGGED_MODEL_SEARCH = SearchSchema(
    subject="logged models",
    prefixes={
        "attribute": "attribute",
        "attributes": "attribute",
        "attr": "attribute",
        "metric": "metric",
        "metrics": "metric",
        "param": "param",
        "params": "param",
        "tag": "tag",
        "tags": "tag",
    },
    attributes=attribute_specs(
        (("name",), False, _STRING_OPS),
        (("model_id",), False, _STRING_OPS),
        (("model_type",), False, _STRING_OPS),
        (("status",), False, _STRING_OPS),
        (("source_run_id",), False, _STRING_OPS),
        (("creation_timestamp", "creation_time"), True, _NUMERIC_OPS),
        (("last_updated_timestamp", "last_updated_time"), True, _NUMERIC_OPS),
    ),
    entity_ops={"metric": _NUMERIC_OPS, "param": _STRING_OPS, "tag": _STRING_OPS},
    order_attributes={},
)


ORDER_COLUMNS: dict[str, sa.SQLColumnExpression[Any]] = {
    "name": CodepointOrder(LoggedModel.name),
    "model_id": LoggedModel.eid,
    "model_type": LoggedModel.model_type,
    "status": LoggedModel.status,
    "creation_timestamp": LoggedModel.created_at,
    "creation_time": LoggedModel.created_at,
    "last_updated_timestamp": LoggedModel.updated_at,
    "last_updated_time": LoggedModel.updated_at,
}
# Each order_by spelling by the first spelling of its column: aliases order once.
ORDER_KEYS = {
    name: next(first for first, other in ORDER_COLUMNS.items() if other is column)
    for name, column in ORDER_COLUMNS.items()
}


def _status_value(comparison: Comparison) -> Any:
    """Status names as the client may write them ("READY") or as stored."""
    if comparison.op in (EQ, NE) and isinstance(comparison.value, str):
        return _known_status(comparison.value)
    if comparison.op in (IN, NOT_IN) and isinstance(comparison.value, tuple):
        return tuple(_known_status(value) for value in comparison.value)
    return comparison.value


def _known_status(value: str) -> str:
    try:
        return logged_models.status(value)
    except InvalidValueError:
        return value


def compile_filter(
    filter_string: str | None, datasets: Sequence[DatasetFilter] = ()
) -> list[sa.ColumnElement[bool]]:
    """Conditions on `LoggedModel` for a logged model filter; metric filters count only
    points on `datasets` when there are some, and `datasets` alone keeps the models with
    a metric on one of them (MLflow's `_apply_filter_string_datasets_search_logged_models`)."""
    conditions: list[sa.ColumnElement[bool]] = []
    comparisons = parse_filter(filter_string, LOGGED_MODEL_SEARCH)
    if datasets and not any(comparison.entity == "metric" for comparison in comparisons):
        conditions.append(logged_models.measured_on_condition(datasets))
    for comparison in comparisons:
        key, op, value = comparison.key, comparison.op, comparison.value
        if comparison.entity == "metric":
            assert isinstance(value, float)
            conditions.append(logged_models.metric_condition(key, op, value, datasets=datasets))
            continue
        if comparison.entity in ("param", "tag"):
            pairs = LoggedModel.params if comparison.entity == "param" else LoggedModel.tags
            conditions.append(logged_models.key_value_condition(pairs, key, op, value))
            continue
        if key in ("creation_timestamp", "last_updated_timestamp"):
            assert isinstance(value, int)
            column = (
                LoggedModel.created_at if key == "creation_timestamp" else LoggedModel.updated_at
            )
            conditions.append(epoch_ms_condition(column, op, value))
            continue
        expression: sa.SQLColumnExpression[Any]
        if key == "name":
            expression = LoggedModel.name
        elif key == "model_id":
            expression = LoggedModel.eid
        elif key == "model_type":
            expression = LoggedModel.model_type
        elif key == "status":
            expression, value = LoggedModel.status, _status_value(comparison)
        else:
            expression = logged_models.source_run_id()
        conditions.append(string_condition(expression, op, value))
    return conditions


def compile_order_by(entries: Sequence[dict[str, Any]]) -> list[sa.ColumnElement[Any]]:
    """ORDER BY from MLflow's {field_name, ascending, dataset_name, dataset_digest}
    objects, then MLflow's tie-breakers: newest first, then model id (each unless ordered
    by already). A `metrics.<key>` field sorts by the model's latest point of the key, on
    the entry's dataset when it names one (MLflow's `_apply_order_by_search_logged_models`)."""
    clauses: list[sa.ColumnElement[Any]] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for entry in entries:
        field_name = entry.get("field_name")
        if not isinstance(field_name, str) or not field_name:
            raise MissingParameterError("order_by.field_name")
        ascending = entry.get("ascending", True)
        if not isinstance(ascending, bool):
            raise InvalidValueError("order_by.ascending must be a boolean", field="order_by")
        dataset = DatasetFilter(
            name=_optional_string(entry, "dataset_name"),
            digest=_optional_string(entry, "dataset_digest"),
        )
        if field_name.startswith("metrics."):
            key = field_name
            ordering = logged_models.metric_order(
                field_name.removeprefix("metrics."), ascending=ascending, dataset=dataset
            )
        else:
            key = field_name.removeprefix("attributes.")
            column = ORDER_COLUMNS.get(key)
            if column is None:
                raise InvalidValueError(
                    f"Invalid order_by field '{field_name}' for logged models; valid fields "
                    f"are metrics.<key> and {', '.join(sorted(ORDER_COLUMNS))}",
                    field="order_by",
                )
            key = ORDER_KEYS[key]
            dataset = DatasetFilter()
            ordering = [sa.nulls_last(column.asc() if ascending else column.desc())]
        if (key, dataset.name, dataset.digest) in seen:
            raise InvalidValueError(f"order_by repeats '{field_name}'", field="order_by")
        seen.add((key, dataset.name, dataset.digest))
        clauses.extend(ordering)
    ordered_keys = {key for key, _, _ in seen}
    if "creation_timestamp" not in ordered_keys:
        clauses.append(LoggedModel.created_at.desc())
    if "model_id" not in ordered_keys:
        clauses.append(LoggedModel.eid.asc())
    return clauses


def _optional_string(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValueError(f"order_by.{name} must be a string", field="order_by")
    return value


def datasets_filter(entries: Sequence[dict[str, Any]]) -> list[DatasetFilter]:
    """The request's `datasets`: each names a dataset, and may pin its digest."""
    datasets = []
    for entry in entries:
        name, digest = entry.get("dataset_name"), entry.get("dataset_digest")
        if not isinstance(name, str) or not name:
            raise InvalidValueError(
                "`dataset_name` in the `datasets` clause must be specified.", field="datasets"
            )
        if digest is not None and not isinstance(digest, str):
            raise InvalidValueError("datasets.dataset_digest must be a string", field="datasets")
        datasets.append(DatasetFilter(name=name, digest=digest or None))
    return datasets


# --- Rendering -----------------------------------------------------------------------------


async def render(session: AsyncSession, rows: Sequence[LoggedModel]) -> list[dict[str, Any]]:
    """Logged models as MLflow renders them, with one query per kind of data for all."""
    model_iids = await candidates.model_iids(session, model_ids={row.model_id for row in rows})
    run_ids = await candidates.eids_of(
        session,
        candidate_ids={
            row.source_candidate_id for row in rows if row.source_candidate_id is not None
        },
    )
    metrics = await logged_models.get_metrics_of(session, logged_models=rows)
    rendered = []
    for row in rows:
        model_iid = model_iids[row.model_id]
        info: dict[str, Any] = {
            "model_id": row.eid,
            "experiment_id": str(model_iid),
            "name": row.name,
            "creation_timestamp_ms": protocol.milliseconds(row.created_at),
            "last_updated_timestamp_ms": protocol.milliseconds(row.updated_at),
            "artifact_uri": logged_model_artifact_uri(model_iid, row.eid),
            "status": row.status,
            "tags": protocol.key_values(row.tags),
        }
        if row.model_type:
            info["model_type"] = row.model_type
        if row.source_candidate_id is not None and row.source_candidate_id in run_ids:
            info["source_run_id"] = run_ids[row.source_candidate_id]
        elif row.source_run_eid:
            info["source_run_id"] = row.source_run_eid
        if row.status_message:
            info["status_message"] = row.status_message
        data = {
            "params": protocol.key_values(row.params),
            "metrics": [protocol.metric(point, run_id=run_id) for run_id, point in metrics[row.id]],
        }
        rendered.append({"info": info, "data": data})
    return rendered


async def _render_one(session: AsyncSession, row: LoggedModel) -> dict[str, Any]:
    [rendered] = await render(session, [row])
    return rendered


# --- Handlers ------------------------------------------------------------------------------


def _model_id(call: Call) -> str:
    return _path_parameter(call, "model_id")


def _path_parameter(call: Call, name: str) -> str:
    """A parameter of the path; one that no database stores (NUL) is bad input."""
    value = str(call.request.path_params[name])
    http_bodies.refuse_unstorable({name: value})
    return value


def _status(call: Call) -> str:
    value = call.params.get("status")
    if value is None or value == "":
        raise MissingParameterError("status")
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in STATUS_NUMBERS:
            raise InvalidValueError(f"Invalid logged model status {value}", field="status")
        return STATUS_NUMBERS[value]
    if isinstance(value, str):
        if value.isdigit():
            return STATUS_NUMBERS.get(int(value)) or logged_models.status(value)
        return logged_models.status(value)
    raise InvalidValueError(f"Invalid logged model status {value!r}", field="status")


async def create(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    name = call.string("name")
    model_type = call.string("model_type")
    source_run_id = call.string("source_run_id")
    params = dict(call.key_values("params"))
    tags = dict(call.key_values("tags"))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        source = None
        if source_run_id:
            # MLflow keeps a source run id it does not know; so does the service.
            with contextlib.suppress(NotFoundError):
                source = await find_run(session, project, source_run_id, include_deleted=False)
        logged_model = await logged_models.create_logged_model(
            session,
            model=model,
            name=name,
            model_type=model_type,
            source_candidate=source,
            source_run_id=source_run_id or None,
            params=params,
            tags=tags,
            actor=call.actor,
        )
        return {"model": await _render_one(session, logged_model)}


async def get(call: Call) -> dict[str, Any]:
    allow_deleted = call.boolean("allow_deleted")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), include_deleted=allow_deleted
        )
        return {"model": await _render_one(session, logged_model)}


async def finalize(call: Call) -> dict[str, Any]:
    status = _status(call)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), for_update=True
        )
        await logged_models.finalize_logged_model(
            session, logged_model=logged_model, status_name=status, actor=call.actor
        )
        return {"model": await _render_one(session, logged_model)}


async def delete(call: Call) -> dict[str, Any]:
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), for_update=True
        )
        await logged_models.delete_logged_model(
            session, logged_model=logged_model, actor=call.actor
        )
    return {}


async def set_tags(call: Call) -> dict[str, Any]:
    tags = dict(call.key_values("tags"))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), for_update=True
        )
        await logged_models.set_tags(
            session, logged_model=logged_model, tags=tags, actor=call.actor
        )
    return {}


async def delete_tag(call: Call) -> dict[str, Any]:
    key = _path_parameter(call, "tag_key")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), for_update=True
        )
        await logged_models.delete_tag(
            session, logged_model=logged_model, key=key, actor=call.actor
        )
    return {}


async def log_params(call: Call) -> dict[str, Any]:
    params = dict(call.key_values("params"))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call), for_update=True
        )
        await logged_models.log_params(
            session, logged_model=logged_model, params=params, actor=call.actor
        )
    return {}


async def search(call: Call) -> dict[str, Any]:
    experiment_ids = call.strings("experiment_ids")
    if not experiment_ids:
        raise MissingParameterError("experiment_ids")
    conditions = compile_filter(call.string("filter"), datasets_filter(call.objects("datasets")))
    orders = compile_order_by(call.objects("order_by"))
    page = call.page(default=SEARCH_MAX_RESULTS_DEFAULT, threshold=SEARCH_MAX_RESULTS_THRESHOLD)
    iids = [experiment_iid(value) for value in experiment_ids]
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        rows = await logged_models.search_logged_models(
            session,
            project=project,
            experiment_iids=iids,
            where=conditions,
            order_by=orders,
            limit=page.size + 1,
            offset=page.offset,
        )
        shown, token = page.split(rows)
        body: dict[str, Any] = {"models": await render(session, list(shown))}
    if token:
        body["next_page_token"] = token
    return body


async def list_artifacts(call: Call) -> dict[str, Any]:
    """What lies directly under `artifact_directory_path` of a logged model's artifacts."""
    path = checked_path(
        call.string("artifact_directory_path") or "",
        field="artifact_directory_path",
        directory=True,
    )
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        logged_model = await logged_models.get_logged_model(
            session, project=project, eid=_model_id(call)
        )
        model = await session.get_one(Model, logged_model.model_id)
        files = await directory_listing(session, logged_model, path, full_paths=True)
    return {"root_uri": logged_model_artifact_uri(model.iid, logged_model.eid), "files": files}


ENDPOINTS: list[Endpoint] = [
    ("POST", "/mlflow/logged-models", create),
    ("POST", "/mlflow/logged-models/search", search),
    ("GET", "/mlflow/logged-models/{model_id}", get),
    ("PATCH", "/mlflow/logged-models/{model_id}", finalize),
    ("DELETE", "/mlflow/logged-models/{model_id}", delete),
    ("PATCH", "/mlflow/logged-models/{model_id}/tags", set_tags),
    ("DELETE", "/mlflow/logged-models/{model_id}/tags/{tag_key:path}", delete_tag),
    ("POST", "/mlflow/logged-models/{model_id}/params", log_params),
    ("GET", "/mlflow/logged-models/{model_id}/artifacts/directories", list_artifacts),
]
