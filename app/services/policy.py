"""The one place that decides who may do what in a project.

`LEAST_ROLE` is the table: each `Operation` a user can do in a project, with the least
role that may do it. The service that does an operation asks it for that operation, for
the actor it was given, before changing anything (`authorize`, `authorize_in`); doors
(MLflow REST, GraphQL, the package API, the command line) only find what is named, at
READ, so an operation has one rule whichever door it comes through, and GraphQL's
`userPermissions` answers from the same table. (Uploads are the exception still: their
doors check `UPLOAD` before the body streams.) A caller with no user (a job, bootstrap)
acts as `OPERATOR`, an administrator, never as a silent None: None is the anonymous
caller.

Beyond the table: anyone may read a public project; administrators may do everything; a
`read_api` token may only read; an anonymous caller may only read public projects.
`check` answers by raising the error the caller should see: 401 for an anonymous caller
who must sign in, 404 when the caller may not even read the project (as if it did not
exist), 403 when they may read it but not do the operation."""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ForbiddenError, NotFoundError, UnauthenticatedError
from app.models import Membership, Project, Role, Visibility
from app.services.actor import Actor


class Operation(enum.Enum):
    """What a user does in a project; `LEAST_ROLE` says who may."""

    READ = "read"  # see models, candidates, versions, artifacts, members
    CREATE_MODEL = "create_model"  # a model, an MLflow experiment or registered model
    UPDATE_MODEL = "update_model"  # rename, describe, tag, set its metadata
    DELETE_MODEL = "delete_model"  # delete (and restore) a model or experiment
    LOG_RUN = "log_run"  # create and update runs (candidates): metrics, params, tags
    DELETE_RUN = "delete_run"  # delete (and restore) a run or candidate
    CREATE_VERSION = "create_version"  # register a version, promoting a candidate
    UPDATE_VERSION = "update_version"  # describe, tag, stage, set its metadata
    DELETE_VERSION = "delete_version"  # destroy a version for good
    MANAGE_ALIASES = "manage_aliases"  # set and delete a model's aliases
    UPLOAD = "upload"  # write and delete artifact and package files
    UPDATE_PROJECT = "update_project"  # rename or describe the project
    MANAGE_MEMBERS = "manage_members"  # add, change and remove members
    MIGRATE_PACKAGES = "migrate_packages"  # start the package type migration
    CHANGE_VISIBILITY = "change_visibility"  # make the project public or private
    MANAGE_WEBHOOKS = "manage_webhooks"  # see, create, change, test and delete webhooks
    DELETE_PROJECT = "delete_project"  # delete the project (an empty one, or everything in it)
    IMPORT_RUNS = "import_runs"  # import an MLflow server's runs and registry as a job


LEAST_ROLE: dict[Operation, Role] = {
    Operation.READ: Role.REPORTER,
    Operation.CREATE_MODEL: Role.DEVELOPER,
    Operation.UPDATE_MODEL: Role.DEVELOPER,
    Operation.DELETE_MODEL: Role.MAINTAINER,
    Operation.LOG_RUN: Role.DEVELOPER,
    Operation.DELETE_RUN: Role.DEVELOPER,
    Operation.CREATE_VERSION: Role.DEVELOPER,
    Operation.UPDATE_VERSION: Role.DEVELOPER,
    Operation.DELETE_VERSION: Role.DEVELOPER,
    Operation.MANAGE_ALIASES: Role.DEVELOPER,
    Operation.UPLOAD: Role.DEVELOPER,
    Operation.UPDATE_PROJECT: Role.MAINTAINER,
    Operation.MANAGE_MEMBERS: Role.MAINTAINER,
    Operation.MIGRATE_PACKAGES: Role.MAINTAINER,
    Operation.CHANGE_VISIBILITY: Role.OWNER,
    Operation.MANAGE_WEBHOOKS: Role.MAINTAINER,
    Operation.DELETE_PROJECT: Role.OWNER,
    Operation.IMPORT_RUNS: Role.MAINTAINER,
}


async def role_in(session: AsyncSession, actor: Actor | None, project: Project) -> Role | None:
    """The actor's role in `project`, looked up once per session: a request that finds a
    project and then changes something in it asks twice (the surface, then the service)."""
    if actor is None or actor.user_id is None:
        # Anonymous, or the operator: no user, so no membership to look up.
        return None
    known: dict[tuple[int, int], Role | None] = session.info.setdefault(_ROLES, {})
    key = (project.id, actor.user_id)
    if key not in known:
        known[key] = await session.scalar(
            sa.select(Membership.role).where(
                Membership.project_id == project.id, Membership.user_id == actor.user_id
            )
        )
    return known[key]


def remember_role(session: AsyncSession, actor: Actor, project: Project, role: Role | None) -> None:
    """Keep a role read with the project (one statement for both) for `role_in`."""
    if actor.user_id is not None:
        known: dict[tuple[int, int], Role | None] = session.info.setdefault(_ROLES, {})
        known[(project.id, actor.user_id)] = role


def forget_roles(session: AsyncSession, project: Project) -> None:
    """Drop the roles `role_in` keeps for `project` in this session (its members changed)."""
    known: dict[tuple[int, int], Role | None] = session.info.get(_ROLES, {})
    for key in [key for key in known if key[0] == project.id]:
        del known[key]


# Where `role_in` keeps the roles it looked up, in the session's info.
_ROLES = "policy.roles"


def may_read(actor: Actor | None, project: Project, role: Role | None) -> bool:
    if project.visibility is Visibility.PUBLIC:
        return True
    if actor is None:
        return False
    return actor.is_admin or (role is not None and role >= LEAST_ROLE[Operation.READ])


def allows(actor: Actor | None, project: Project, role: Role | None, operation: Operation) -> bool:
    """Whether `actor`, with `role` in `project`, may do `operation` there: what `check`
    lets through, as a flag (what a UI shows its buttons by)."""
    if not may_read(actor, project, role):
        return False
    if operation is Operation.READ:
        return True
    if actor is None or not actor.may_write:
        return False
    return actor.is_admin or (role is not None and role >= LEAST_ROLE[operation])


def check(actor: Actor | None, project: Project, role: Role | None, operation: Operation) -> None:
    """Allow, or raise the error the caller should see (see the module's docstring)."""
    if allows(actor, project, role, operation):
        return
    if not may_read(actor, project, role):
        if actor is None:
            raise UnauthenticatedError("authentication is required")
        raise NotFoundError(f"Project '{project.path}' does not exist", field="project")
    if actor is None:
        raise UnauthenticatedError("authentication is required to make changes")
    if not actor.may_write:
        raise ForbiddenError("the access token's read_api scope allows reading only")
    raise ForbiddenError(
        f"this needs the {LEAST_ROLE[operation].name.lower()} role or higher in '{project.path}'"
    )


async def authorize(
    session: AsyncSession, actor: Actor | None, project: Project, operation: Operation
) -> Role | None:
    """Check `operation` on `project` for `actor`; returns the actor's role there."""
    role = await role_in(session, actor, project)
    check(actor, project, role, operation)
    return role


async def authorize_in(
    session: AsyncSession, actor: Actor | None, project_id: int, operation: Operation
) -> Role | None:
    """`authorize` for the project a row belongs to: what a service that changes a row
    asks before it changes anything."""
    project = await session.get_one(Project, project_id)
    return await authorize(session, actor, project, operation)


def require_admin(actor: Actor | None) -> Actor:
    if actor is None:
        raise UnauthenticatedError("authentication is required")
    if not actor.is_admin:
        raise ForbiddenError("only an administrator may do this")
    if not actor.may_write:
        raise ForbiddenError("the access token's read_api scope allows reading only")
    return actor


def require_user(actor: Actor | None, *, write: bool) -> Actor:
    if actor is None:
        raise UnauthenticatedError("authentication is required")
    if write and not actor.may_write:
        raise ForbiddenError("the access token's read_api scope allows reading only")
    return actor
