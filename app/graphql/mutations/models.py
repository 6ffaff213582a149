"""Creating, changing and deleting models."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import ConflictError, NotFoundError, PermissionError, ValidationError
from app.graphql.nodes import for_change
from app.graphql.types.common import KeyValueInput
from app.graphql.types.jobs import Job, JobStarted
from app.graphql.types.models import Model
from app.models import Model as ModelRow
from app.services import models, projects

ModelResult = Annotated[
    Model | ValidationError | ConflictError | NotFoundError | PermissionError,
    strawberry.union("ModelResult"),
]
ModelDeleteResult = Annotated[
    JobStarted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("ModelDeleteResult"),
]


@strawberry.input
class ModelCreateInput:
    project: str = strawberry.field(description="The project's path.")
    display_name: str
    name: str | None = strawberry.field(
        default=None, description="The slug; derived from the display name when omitted."
    )
    description: str | None = None
    metadata: list[KeyValueInput] | None = None


@strawberry.input
class ModelUpdateInput:
    id: strawberry.ID
    display_name: str | None = None
    description: str | None = None
    metadata: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Entries to set; others stay."
    )


@strawberry.input
class ModelDeleteInput:
    id: strawberry.ID


async def model_create(info: Info, input: ModelCreateInput) -> ModelResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        project = await projects.find_project(session, actor=actor, path=input.project)
        row = await models.create_model(
            session,
            project=project,
            display_name=input.display_name,
            name=input.name,
            description=input.description,
            metadata=KeyValueInput.as_dict(input.metadata),
            registered=True,
            actor=actor,
        )
    return Model.from_row(row)


async def model_update(info: Info, input: ModelUpdateInput) -> ModelResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, ModelRow, input.id)
        await models.update_model(
            session,
            model=row,
            display_name=input.display_name,
            description=input.description,
            actor=actor,
        )
        if input.metadata:
            entries = KeyValueInput.as_dict(input.metadata)
            await models.set_model_metadata(session, model=row, items=entries, actor=actor)
    return Model.from_row(row)


async def model_delete(info: Info, input: ModelDeleteInput) -> ModelDeleteResult:
    """Delete a model for good: it is gone from every read at once, and the returned job
    removes its candidates, versions, metrics and artifacts in the background."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await for_change(session, actor, ModelRow, input.id)
        job = await models.destroy_model(session, model=row, actor=actor)
    return JobStarted(job=Job.from_row(job))
