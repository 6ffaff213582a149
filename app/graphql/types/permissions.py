"""`userPermissions`: what the caller may do with a project, model, version or candidate,
as the booleans a UI shows its buttons by.

Each flag names one `Operation` of the policy's table and is `policy.allows` for the
caller (their role in the object's project, the admin flag, the token's scope): exactly
what the operation itself then lets through, whichever door it comes through. A
`read_api` token or an anonymous caller gets all false. The role is read per project by
a per-request loader, so a page of objects costs the same statements whatever its size.
"""

from __future__ import annotations

from typing import Any, TypeVar

import strawberry
from strawberry.types.base import get_object_definition

from app.graphql.context import Info
from app.services import policy
from app.services.policy import LEAST_ROLE, Operation

OPERATION = "operation"


def _flag(operation: Operation, what: str) -> Any:
    """A flag answering for `operation`: the field carries it for `permissions`."""
    least = LEAST_ROLE[operation].name.lower()
    return strawberry.field(
        description=f"Whether the caller may {what} ({operation.name}: {least} or higher).",
        metadata={OPERATION: operation},
    )


@strawberry.type(description="What the caller may do in a project.")
class ProjectPermissions:
    update_project: bool = _flag(Operation.UPDATE_PROJECT, "rename or describe the project")
    manage_members: bool = _flag(Operation.MANAGE_MEMBERS, "add, change and remove members")
    create_model: bool = _flag(Operation.CREATE_MODEL, "create a model")
    change_visibility: bool = _flag(
        Operation.CHANGE_VISIBILITY, "make the project public or private"
    )
    manage_webhooks: bool = _flag(
        Operation.MANAGE_WEBHOOKS, "see, create, change, test and delete webhooks"
    )


@strawberry.type(description="What the caller may do with a model.")
class ModelPermissions:
    update_model: bool = _flag(Operation.UPDATE_MODEL, "rename, describe or tag the model")
    delete_model: bool = _flag(Operation.DELETE_MODEL, "delete the model")
    create_version: bool = _flag(Operation.CREATE_VERSION, "create a version")
    manage_aliases: bool = _flag(Operation.MANAGE_ALIASES, "set and delete aliases")
    log_candidate: bool = _flag(Operation.LOG_RUN, "log a candidate (an MLflow run)")


@strawberry.type(description="What the caller may do with a model version.")
class ModelVersionPermissions:
    update_version: bool = _flag(Operation.UPDATE_VERSION, "describe, tag or stage the version")
    delete_version: bool = _flag(Operation.DELETE_VERSION, "delete the version")
    manage_aliases: bool = _flag(Operation.MANAGE_ALIASES, "point an alias at the version")
    upload_files: bool = _flag(Operation.UPLOAD, "upload files to the version's package")


@strawberry.type(description="What the caller may do with a candidate.")
class CandidatePermissions:
    update_candidate: bool = _flag(Operation.LOG_RUN, "rename the candidate or set its metadata")
    delete_candidate: bool = _flag(Operation.DELETE_RUN, "delete the candidate")
    log_metrics: bool = _flag(Operation.LOG_RUN, "log metrics and params")
    promote: bool = _flag(Operation.CREATE_VERSION, "promote the candidate into a version")


P = TypeVar(
    "P", ProjectPermissions, ModelPermissions, ModelVersionPermissions, CandidatePermissions
)


async def permissions(info: Info, kind: type[P], project_id: int) -> P:
    """The caller's `kind` of permissions on an object of the project `project_id`."""
    project = await info.context.loaders.project.load(project_id)
    role = await info.context.loaders.role.load(project_id)
    actor = info.context.actor
    flags = get_object_definition(kind, strict=True).fields
    return kind(
        **{
            flag.python_name: project is not None
            and policy.allows(actor, project, role, flag.metadata[OPERATION])
            for flag in flags
        }
    )
