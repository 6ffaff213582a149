"""Creating versions (promoting candidates), changing and deleting them, and aliases."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.errors import InvalidValueError
from app.graphql.context import Info
from app.graphql.errors import ConflictError, NotFoundError, PermissionError, ValidationError
from app.graphql.nodes import for_change
from app.graphql.types.common import KeyValueInput
from app.graphql.types.jobs import Job, JobStarted
from app.graphql.types.models import Model, ModelVersion
from app.models import Candidate as CandidateRow
from app.models import Model as ModelRow
from app.models import ModelVersion as ModelVersionRow
from app.models import VersionStage
from app.services import versions

ModelVersionResult = Annotated[
    ModelVersion | ValidationError | ConflictError | NotFoundError | PermissionError,
    strawberry.union("ModelVersionResult"),
]
ModelVersionDeleteResult = Annotated[
    JobStarted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("ModelVersionDeleteResult"),
]
AliasSetResult = Annotated[
    ModelVersion | ValidationError | NotFoundError | PermissionError,
    strawberry.union("AliasSetResult"),
]


@strawberry.type
class AliasDeleted:
    model: Model
    alias: str


AliasDeleteResult = Annotated[
    AliasDeleted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("AliasDeleteResult"),
]


@strawberry.input
class ModelVersionCreateInput:
    model_id: strawberry.ID
    candidate_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The candidate to promote; without one the version gets a new candidate.",
    )
    version: str | None = strawberry.field(
        default=None, description="The semver; `<number>.0.0` when omitted."
    )
    description: str | None = None
    metadata: list[KeyValueInput] | None = None


@strawberry.input
class ModelVersionUpdateInput:
    id: strawberry.ID
    description: str | None = None
    stage: VersionStage | None = None
    metadata: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Entries to set; others stay."
    )


@strawberry.input
class ModelVersionDeleteInput:
    id: strawberry.ID


@strawberry.input
class AliasSetInput:
    version_id: strawberry.ID
    alias: str


@strawberry.input
class AliasDeleteInput:
    model_id: strawberry.ID
    alias: str


async def model_version_create(info: Info, input: ModelVersionCreateInput) -> ModelVersionResult:
    """Release the model's next version: promote a candidate, or start from a new one.
    A promoted candidate's logged model becomes the version's source, so MLflow's
    `load_model("models:/<name>/<version>")` loads it."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        model = await for_change(session, actor, ModelRow, input.model_id, field="modelId")
        candidate = None
        source = None
        if input.candidate_id is not None:
            candidate = await for_change(
                session,
                actor,
                CandidateRow,
                input.candidate_id,
                field="candidateId",
            )
            if candidate.model_id != model.id:
                raise InvalidValueError(
                    "Only a candidate of the model itself can be promoted into its version",
                    field="candidateId",
                )
            source = await versions.promotion_source(session, candidate=candidate)
        row = await versions.create_version(
            session,
            model=model,
            candidate=candidate,
            version=input.version,
            description=input.description,
            source=source,
            metadata=KeyValueInput.as_dict(input.metadata),
            actor=actor,
        )
    return ModelVersion.from_row(row)


async def model_version_update(info: Info, input: ModelVersionUpdateInput) -> ModelVersionResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, ModelVersionRow, input.id)
        await versions.update_version(
            session, version=row, description=input.description, stage=input.stage, actor=actor
        )
        if input.metadata:
            entries = KeyValueInput.as_dict(input.metadata)
            await versions.set_version_metadata(session, version=row, items=entries, actor=actor)
    return ModelVersion.from_row(row)


async def model_version_delete(
    info: Info, input: ModelVersionDeleteInput
) -> ModelVersionDeleteResult:
    """Delete a version for good; its candidate stays. The job removes its package."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, ModelVersionRow, input.id)
        job = await versions.destroy_version(session, version=row, actor=actor)
    return JobStarted(job=Job.from_row(job))


async def alias_set(info: Info, input: AliasSetInput) -> AliasSetResult:
    """Point an alias at a version, moving it from the version that held it."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(
            session,
            actor,
            ModelVersionRow,
            input.version_id,
            field="versionId",
        )
        model = await session.get_one(ModelRow, row.model_id)
        await versions.set_alias(session, model=model, version=row, alias=input.alias, actor=actor)
    return ModelVersion.from_row(row)


async def alias_delete(info: Info, input: AliasDeleteInput) -> AliasDeleteResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        model = await for_change(session, actor, ModelRow, input.model_id, field="modelId")
        await versions.delete_alias(session, model=model, alias=input.alias, actor=actor)
    return AliasDeleted(model=Model.from_row(model), alias=input.alias)
