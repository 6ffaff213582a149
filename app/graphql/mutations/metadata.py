"""Deleting metadata entries of a model, a version or a candidate: one mutation for the
three, told apart by the owner's global id. Every name must be there: one that is not
answers NotFoundError (field `names`) and nothing is deleted."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.relay.types import GlobalIDValueError

from app.errors import InvalidValueError
from app.graphql.context import Info
from app.graphql.errors import NotFoundError, PermissionError, ValidationError
from app.graphql.nodes import for_change
from app.graphql.types.candidates import Candidate
from app.graphql.types.models import Model, ModelVersion
from app.models import Candidate as CandidateRow
from app.models import Model as ModelRow
from app.models import ModelVersion as ModelVersionRow
from app.services import candidates, models, validation, versions

MetadataDeleteResult = Annotated[
    Model | ModelVersion | Candidate | ValidationError | NotFoundError | PermissionError,
    strawberry.union("MetadataDeleteResult"),
]

_OWNERS = ("Model", "ModelVersion", "Candidate")


@strawberry.input
class MetadataDeleteInput:
    owner_id: strawberry.ID = strawberry.field(
        description="The global id of a Model, a ModelVersion or a Candidate."
    )
    names: list[str]


def _owner_type(owner_id: str) -> str:
    try:
        type_name = relay.GlobalID.from_id(owner_id).type_name
    except GlobalIDValueError:
        type_name = ""
    if type_name not in _OWNERS:
        raise InvalidValueError(
            f"'{owner_id}' is not the id of a Model, a ModelVersion or a Candidate",
            field="ownerId",
        )
    return type_name


async def metadata_delete(info: Info, input: MetadataDeleteInput) -> MetadataDeleteResult:
    """Delete the named metadata entries (a candidate's are MLflow's run tags); answers
    the owner as it is afterwards."""
    actor = info.context.actor
    owner_type = _owner_type(input.owner_id)
    names = validation.names(input.names, field="names")
    if not names:
        raise InvalidValueError("Name at least one entry", field="names")
    async with info.context.database.session() as session:
        if owner_type == "Model":
            model = await for_change(session, actor, ModelRow, input.owner_id, field="ownerId")
            for name in names:
                await models.delete_model_metadata(session, model=model, name=name, actor=actor)
            return Model.from_row(model)
        if owner_type == "ModelVersion":
            version = await for_change(
                session,
                actor,
                ModelVersionRow,
                input.owner_id,
                field="ownerId",
            )
            for name in names:
                await versions.delete_version_metadata(
                    session, version=version, name=name, actor=actor
                )
            return ModelVersion.from_row(version)
        candidate = await for_change(session, actor, CandidateRow, input.owner_id, field="ownerId")
        for name in names:
            await candidates.delete_metadata(session, candidate=candidate, name=name, actor=actor)
        return Candidate.from_row(candidate)
