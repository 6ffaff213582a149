"""MLflow's experiment and registered-model searches, both over `Model`: the name is the
display name and tags are model metadata. A registered-model search hides prompts unless
its filter asks for them, as MLflow's registry store does; the model-version search
(`app.search.versions`) shares that rule through `without_prompt_filters` and
`model_is_prompt`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from app.models import Model, ModelMetadata
from app.search.grammar import (
    EQ,
    EXPERIMENT_SEARCH,
    IS_NOT_NULL,
    IS_NULL,
    NE,
    REGISTERED_MODEL_SEARCH,
    Comparison,
    Value,
    parse_filter,
    parse_order_by,
)
from app.search.sql import CodepointOrder, direction, epoch_ms_condition, string_condition

__all__ = [
    "IS_PROMPT_TAG",
    "compile_experiment_filter",
    "compile_experiment_order_by",
    "compile_registered_model_filter",
    "compile_registered_model_order_by",
    "model_is_prompt",
    "without_prompt_filters",
]

# The tag that marks a registered model (and its versions) as a prompt.
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"


# --- Experiments (models) ----------------------------------------------------------------


def compile_experiment_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Model` for an MLflow experiment filter: ``name`` is the display name,
    ``creation_time``/``last_update_time`` are milliseconds, tags are model metadata."""
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in parse_filter(filter_string, EXPERIMENT_SEARCH):
        key, op, value = comparison.key, comparison.op, comparison.value
        if comparison.entity == "tag":
            conditions.append(_model_tag_condition(key, op, value))
        elif key == "name":
            conditions.append(string_condition(Model.display_name, op, value))
        else:
            assert isinstance(value, int)
            column = Model.created_at if key == "creation_time" else Model.updated_at
            conditions.append(epoch_ms_condition(column, op, value))
    return conditions


def _model_tag_condition(key: str, op: str, value: Value) -> sa.ColumnElement[bool]:
    found = sa.exists().where(ModelMetadata.model_id == Model.id, ModelMetadata.name == key)
    if op == IS_NULL:
        return ~found
    if op == IS_NOT_NULL:
        return found
    return found.where(string_condition(ModelMetadata.value, op, value))


def compile_experiment_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `Model`; MLflow's default is creation time (newest first) then
    experiment id, and experiment id (descending) breaks ties otherwise."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(Model.display_name),
        "experiment_id": Model.iid,
        "creation_time": Model.created_at,
        "last_update_time": Model.updated_at,
    }
    orders = parse_order_by(
        order_by or ["creation_time DESC", "experiment_id ASC"], EXPERIMENT_SEARCH
    )
    clauses = [direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "experiment_id" for o in orders):
        clauses.append(Model.iid.desc())
    clauses.append(Model.id.asc())
    return clauses


# --- Registered models (models) ----------------------------------------------------------


def _is_prompt_query(comparisons: Sequence[Comparison]) -> bool:
    """Whether the filter asks for prompts (MLflow's registry rule: the first comparison
    on the prompt tag decides; `= 'true'` or `!= 'false'` means prompts)."""
    for comparison in comparisons:
        if comparison.entity == "tag" and comparison.key == IS_PROMPT_TAG:
            value = str(comparison.value).lower()
            return (comparison.op == EQ and value == "true") or (
                comparison.op == NE and value == "false"
            )
    return False


def without_prompt_filters(
    comparisons: Sequence[Comparison],
) -> tuple[list[Comparison], bool]:
    """The comparisons to apply and whether prompts are excluded.

    MLflow's registry returns normal models unless the filter asks for prompts, and the
    3.x client appends ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every search. Models
    do not carry that tag, so taken literally (the tag must exist) it would hide every
    model; like MLflow's store, comparisons on the tag are dropped and prompts (tag
    value 'true') excluded instead."""
    if _is_prompt_query(comparisons):
        return list(comparisons), False
    kept = [c for c in comparisons if not (c.entity == "tag" and c.key == IS_PROMPT_TAG)]
    return kept, True


def compile_registered_model_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `Model` for an MLflow registered-model filter (``name`` is the display
    name). Prompts are excluded unless the filter asks for them, even with no filter."""
    comparisons, exclude_prompts = without_prompt_filters(
        parse_filter(filter_string, REGISTERED_MODEL_SEARCH)
    )
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in comparisons:
        if comparison.entity == "tag":
            conditions.append(_model_tag_condition(comparison.key, comparison.op, comparison.value))
        else:
            conditions.append(string_condition(Model.display_name, comparison.op, comparison.value))
    if exclude_prompts:
        conditions.append(~model_is_prompt(Model.id))
    return conditions


def model_is_prompt(model_id: sa.SQLColumnExpression[int]) -> sa.ColumnElement[bool]:
    return sa.exists().where(
        ModelMetadata.model_id == model_id,
        ModelMetadata.name == IS_PROMPT_TAG,
        ModelMetadata.value == "true",
    )


def compile_registered_model_order_by(
    order_by: Sequence[str] | None,
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `Model`: name, last_updated_timestamp (or `timestamp`),
    creation_timestamp; the name (ascending) breaks ties, as in MLflow."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(Model.display_name),
        "last_updated_timestamp": Model.updated_at,
        "creation_timestamp": Model.created_at,
    }
    orders = parse_order_by(order_by, REGISTERED_MODEL_SEARCH)
    clauses = [direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "name" for o in orders):
        clauses.append(direction(columns["name"], ascending=True))
    clauses.append(Model.id.asc())
    return clauses
