"""MLflow's workspaces API over projects: a workspace is a modelreg project, its name the
project's path, and ``default`` the default project.

=========  ===============================  ===============================================
method     path under /api/3.0/mlflow       answer
=========  ===============================  ===============================================
GET        ``/workspaces``                  ``{"workspaces": [...]}``: the projects the
                                            caller may read, by name
POST       ``/workspaces``                  201 ``{"workspace": ...}``: a new private
                                            project (administrators), owned by its creator
GET        ``/workspaces/<name>``           ``{"workspace": ...}``
PATCH      ``/workspaces/<name>``           ``{"workspace": ...}`` with the new description
                                            (maintainers)
DELETE     ``/workspaces/<name>?mode=...``  204: the project deleted (owners), or with
                                            CASCADE its destruction started
=========  ===============================  ===============================================

A workspace is MLflow's `Workspace` message: ``{"name": ..., "description": ...}``, the
description left out when the project has none. A project the caller may not read is
answered like a missing one (RESOURCE_DOES_NOT_EXIST). A new workspace's name follows
MLflow's rule (`WorkspaceNameValidator`: 2 to 63 lowercase letters, digits and inner
hyphens, not a reserved word) and ``default`` is never created or deleted, each refused
with INVALID_PARAMETER_VALUE as MLflow does.

Artifacts live in modelreg's packages, so ``default_artifact_root`` and
``trace_archival_config`` are refused (INVALID_PARAMETER_VALUE). Deletion takes MLflow's
modes: RESTRICT (the default) deletes a project holding nothing but its empty ``Default``
experiment and refuses any other with INVALID_STATE; CASCADE deletes the project with
everything in it: the answer comes at once, the project and all it holds leave every read
and its name is free, and a ``delete_project`` job removes the rows and the artifacts
(MLflow's client does not wait either). SET_DEFAULT answers NOT_IMPLEMENTED: moving a
project's models into ``default`` would renumber their experiment ids and run into
``default``'s names, so it could not keep what MLflow promises of it.
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import DomainError, InvalidValueError
from app.mlflow.call import Call
from app.models import Project
from app.services import projects
from app.services.projects import DEFAULT_PROJECT_PATH

# MLflow's `WorkspaceNameValidator`.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_LENGTHS = range(2, 64)
_RESERVED_NAMES = {"workspaces", "api", "ajax-api", "static-files"}

# MLflow's `WorkspaceDeletionMode`, in its order.
DELETION_MODES = ("SET_DEFAULT", "CASCADE", "RESTRICT")
# Settings of MLflow's workspaces that modelreg's projects do not have.
_UNSUPPORTED_FIELDS = ("default_artifact_root", "trace_archival_config")


class UnsupportedModeError(DomainError):
    """A deletion mode MLflow defines that modelreg does not offer."""


def render(project: Project) -> dict[str, Any]:
    workspace: dict[str, Any] = {"name": project.path}
    if project.description is not None:
        workspace["description"] = project.description
    return workspace


def _name(call: Call) -> str:
    return str(call.request.path_params["workspace_name"])


def _new_name(call: Call) -> str:
    name = call.required("name")
    if name == DEFAULT_PROJECT_PATH:
        raise InvalidValueError(
            f"The '{DEFAULT_PROJECT_PATH}' workspace is reserved and cannot be created",
            field="name",
        )
    if len(name) not in _NAME_LENGTHS:
        raise InvalidValueError(
            f"Workspace name '{name}' must be between 2 and 63 characters.", field="name"
        )
    if not _NAME.match(name):
        raise InvalidValueError(
            f"Workspace name '{name}' must match the pattern {_NAME.pattern} "
            "(lowercase alphanumeric with optional internal hyphens).",
            field="name",
        )
    if name in _RESERVED_NAMES:
        raise InvalidValueError(
            f"Workspace name '{name}' is reserved and cannot be used.", field="name"
        )
    return name


def _refuse_unsupported_fields(call: Call) -> None:
    for field in _UNSUPPORTED_FIELDS:
        if call.params.get(field) not in (None, "", {}):
            raise InvalidValueError(
                f"'{field}' is not supported: a workspace is a modelreg project, whose "
                "artifacts live in its packages",
                field=field,
            )


async def list_workspaces(call: Call) -> dict[str, Any]:
    async with call.database.session(read_only=True) as session:
        readable = await projects.list_projects(session, actor=call.actor)
    return {"workspaces": [render(project) for project in readable]}


async def create_workspace(call: Call) -> dict[str, Any]:
    name = _new_name(call)
    description = call.string("description")
    _refuse_unsupported_fields(call)
    async with call.database.session() as session:
        project = await projects.create_project_on_request(
            session, actor=call.actor, path=name, description=description
        )
        return {"workspace": render(project)}


async def get_workspace(call: Call) -> dict[str, Any]:
    async with call.database.session(read_only=True) as session:
        project = await projects.find_project(session, actor=call.actor, path=_name(call))
        return {"workspace": render(project)}


async def update_workspace(call: Call) -> dict[str, Any]:
    _refuse_unsupported_fields(call)
    if "description" not in call.params:
        raise InvalidValueError("Workspace update must have at least one key")
    description = call.string("description") or ""
    async with call.database.session() as session:
        project = await projects.find_project(session, actor=call.actor, path=_name(call))
        await projects.update_project(
            session, project=project, actor=call.actor, description=description
        )
        return {"workspace": render(project)}


async def delete_workspace(call: Call) -> dict[str, Any]:
    name = _name(call)
    if name == DEFAULT_PROJECT_PATH:
        raise InvalidValueError(
            f"The '{DEFAULT_PROJECT_PATH}' workspace is reserved and cannot be deleted"
        )
    mode = call.request.query_params.get("mode", "RESTRICT")
    if mode not in DELETION_MODES:
        raise InvalidValueError(
            f"Invalid deletion mode '{mode}'. Must be one of: {', '.join(DELETION_MODES)}",
            field="mode",
        )
    if mode == "SET_DEFAULT":
        raise UnsupportedModeError(
            "Deletion mode SET_DEFAULT is not supported: delete the workspace with mode "
            "CASCADE, or delete its models first and then the workspace with mode RESTRICT",
            field="mode",
        )
    async with call.database.session() as session:
        project = await projects.find_project(session, actor=call.actor, path=name)
        await projects.delete_project(
            session, project=project, actor=call.actor, cascade=mode == "CASCADE"
        )
    return {}


# (HTTP method, path under /api/3.0/mlflow, handler, HTTP status of success)
ENDPOINTS = [
    ("GET", "/workspaces", list_workspaces, 200),
    ("POST", "/workspaces", create_workspace, 201),
    ("GET", "/workspaces/{workspace_name}", get_workspace, 200),
    ("PATCH", "/workspaces/{workspace_name}", update_workspace, 200),
    ("DELETE", "/workspaces/{workspace_name}", delete_workspace, 204),
]
