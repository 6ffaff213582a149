"""The one place that decides who may do what in a project. Surfaces ask it; it
answers by raising the error the caller should see."""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ForbiddenError, NotFoundError, UnauthenticatedError
from app.models import Membership, Project, Role, Visibility
from app.services.actor import Actor


class Action(enum.Enum):
    """What a caller wants to do, with the least role that may do it."""

    READ = Role.REPORTER  # see models, candidates, versions, artifacts
    WRITE = Role.DEVELOPER  # log and delete runs, create and delete versions, upload
    DELETE = Role.MAINTAINER  # delete models, manage protected aliases and stages
    MANAGE_MEMBERS = Role.MAINTAINER
    OWN = Role.OWNER  # delete or transfer the project


async def role_in(session: AsyncSession, actor: Actor | None, project: Project) -> Role | None:
    if actor is None:
        return None
    role: Role | None = await session.scalar(
        sa.select(Membership.role).where(
            Membership.project_id == project.id, Membership.user_id == actor.user_id
        )
    )
    return role


def may_read(actor: Actor | None, project: Project, role: Role | None) -> bool:
    if project.visibility is Visibility.PUBLIC:
        return True
    if actor is None:
        return False
    return actor.is_admin or (role is not None and role >= Role.REPORTER)


def check(actor: Actor | None, project: Project, role: Role | None, action: Action) -> None:
    """Allow, or raise: 401 for an anonymous caller who needs to sign in, 404 when the
    caller may not even read the project (as if it did not exist), 403 otherwise."""
    if not may_read(actor, project, role):
        if actor is None:
            raise UnauthenticatedError("authentication is required")
        raise NotFoundError(f"Project '{project.path}' does not exist", field="project")
    if action is Action.READ:
        return
    if actor is None:
        raise UnauthenticatedError("authentication is required to make changes")
    if not actor.may_write:
        raise ForbiddenError("the access token's read_api scope allows reading only")
    if actor.is_admin:
        return
    if role is None or role < action.value:
        raise ForbiddenError(
            f"this needs the {action.value.name.lower()} role or higher in '{project.path}'"
        )


async def authorize(
    session: AsyncSession, actor: Actor | None, project: Project, action: Action
) -> Role | None:
    """Check `action` on `project` for `actor`; returns the actor's role there."""
    role = await role_in(session, actor, project)
    check(actor, project, role, action)
    return role


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
