"""MLflow's model-version search over `ModelVersion`: `compile_model_version_filter` and
`compile_model_version_order_by`. Versions of prompts are hidden unless the filter asks
for them, by the registered-model rule (`app.search.models`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from app.models import Candidate, Model, ModelVersion, ModelVersionMetadata
from app.search.grammar import MODEL_VERSION_SEARCH, parse_filter, parse_order_by
from app.search.models import IS_PROMPT_TAG, model_is_prompt, without_prompt_filters
from app.search.sql import CodepointOrder, direction, integer_condition, string_condition

__all__ = [
    "SOURCE_RUN_ID_KEY",
    "compile_model_version_filter",
    "compile_model_version_order_by",
]

# A version whose run was registered before holds that run's id in its metadata; its own
# candidate is a fresh one (see app/mlflow/registry.py).
SOURCE_RUN_ID_KEY = "mlflow.source.run_id"


def _version_run_id() -> sa.ColumnElement[str]:
    """The run id MLflow shows for a version: the recorded source run, else its candidate's."""
    recorded = (
        sa.select(ModelVersionMetadata.value)
        .where(
            ModelVersionMetadata.version_id == ModelVersion.id,
            ModelVersionMetadata.name == SOURCE_RUN_ID_KEY,
        )
        .scalar_subquery()
    )
    own = (
        sa.select(Candidate.eid)
        .where(Candidate.model_version_id == ModelVersion.id)
        .scalar_subquery()
    )
    return sa.func.coalesce(recorded, own)


def compile_model_version_filter(filter_string: str | None) -> list[sa.ColumnElement[bool]]:
    """Conditions on `ModelVersion` for an MLflow model-version filter: ``name`` is the
    model's display name, ``run_id`` the run id of the version's candidate,
    ``version_number`` the sequential number, ``source_path`` the source. Versions of
    prompts are excluded unless the filter asks for them."""
    comparisons, exclude_prompts = without_prompt_filters(
        parse_filter(filter_string, MODEL_VERSION_SEARCH)
    )
    conditions: list[sa.ColumnElement[bool]] = []
    for comparison in comparisons:
        key, op, value = comparison.key, comparison.op, comparison.value
        if comparison.entity == "tag":
            conditions.append(
                sa.exists()
                .where(
                    ModelVersionMetadata.version_id == ModelVersion.id,
                    ModelVersionMetadata.name == key,
                )
                .where(string_condition(ModelVersionMetadata.value, op, value))
            )
        elif key == "name":
            conditions.append(
                ModelVersion.model_id.in_(
                    sa.select(Model.id).where(string_condition(Model.display_name, op, value))
                )
            )
        elif key == "run_id":
            conditions.append(string_condition(_version_run_id(), op, value))
        elif key == "source_path":
            conditions.append(string_condition(ModelVersion.source, op, value))
        else:  # version_number
            assert isinstance(value, int)
            conditions.append(integer_condition(ModelVersion.number, op, value, bits=32))
    if exclude_prompts:
        conditions.append(~model_is_prompt(ModelVersion.model_id))
        # MLflow marks a prompt's versions too; any marked version makes the model a prompt.
        sibling = aliased(ModelVersion)
        conditions.append(
            ~sa.exists().where(
                sibling.model_id == ModelVersion.model_id,
                ModelVersionMetadata.version_id == sibling.id,
                ModelVersionMetadata.name == IS_PROMPT_TAG,
                ModelVersionMetadata.value == "true",
            )
        )
    return conditions


def compile_model_version_order_by(
    order_by: Sequence[str] | None,
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY on `ModelVersion`; MLflow's default is last update (newest first), model
    name, version number (highest first); name then number break remaining ties."""
    columns: dict[str, sa.SQLColumnExpression[Any]] = {
        "name": CodepointOrder(
            sa.select(Model.display_name).where(Model.id == ModelVersion.model_id).scalar_subquery()
        ),
        "version_number": ModelVersion.number,
        "creation_timestamp": ModelVersion.created_at,
        "last_updated_timestamp": ModelVersion.updated_at,
    }
    orders = parse_order_by(
        order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"],
        MODEL_VERSION_SEARCH,
    )
    clauses = [direction(columns[o.key], o.ascending) for o in orders]
    if not any(o.key == "name" for o in orders):
        clauses.append(direction(columns["name"], ascending=True))
    if not any(o.key == "version_number" for o in orders):
        clauses.append(ModelVersion.number.desc())
    clauses.append(ModelVersion.id.asc())
    return clauses
