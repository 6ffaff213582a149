"""Projects: the unit of ownership; every model, candidate and package lives in one,
and its members' roles decide who may see and change it. A project is what MLflow calls a
workspace, its path the workspace's name.

Administrators create projects (the command line, MLflow's `create_workspace`); owners
delete them. Deleting an empty project removes it at once; a project holding more than its
`Default` model with no runs is refused with `ProjectNotEmptyError`, as MLflow's RESTRICT
deletion of a workspace is, unless the deletion cascades (MLflow's CASCADE): then the
project is marked pending destruction with all it holds, which leaves every read and write
at once and frees its path, and a `delete_project` job removes the rows and their objects.
The `default` project is never deleted."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from typing import Literal, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rows_by_id
from app.errors import (
    AlreadyExistsError,
    ForbiddenError,
    InvalidValueError,
    NotFoundError,
    UnauthenticatedError,
)
from app.models import (
    Candidate,
    Job,
    LifecycleState,
    LoggedModel,
    Membership,
    Model,
    ModelVersion,
    Package,
    Project,
    Role,
    User,
    Visibility,
)
from app.services import audit, jobs, policy, validation
from app.services.actor import Actor
from app.services.policy import Operation
from app.web_paths import SURFACE_SEGMENTS

DEFAULT_PROJECT_PATH = "default"
DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_DISPLAY_NAME = "Default"

_PROJECT_PATH = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_PATH_LENGTH = 100
# Projects pending destruction are in no read.
_ACTIVE = Project.state == LifecycleState.ACTIVE


class ProjectNotEmptyError(InvalidValueError):
    """The project still holds models, runs or packages, so it cannot be deleted."""


async def create_project(
    session: AsyncSession,
    *,
    path: str,
    name: str | None = None,
    description: str | None = None,
    visibility: Visibility = Visibility.PRIVATE,
    owner: User | None = None,
    actor: Actor | None = None,
) -> Project:
    """Create a project with its `Default` model (MLflow's experiment 0); `owner`
    becomes its first member, as owner."""
    if not _PROJECT_PATH.match(path):
        raise InvalidValueError(
            f"'{path}' is not a valid project path: lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit, at most 100 characters",
            field="path",
        )
    if path in SURFACE_SEGMENTS:
        raise InvalidValueError(
            f"'{path}' is taken by the server's own addresses (/{path}/...); choose another "
            "project path",
            field="path",
        )
    validation.description(description)
    if await session.scalar(sa.select(Project.id).where(Project.path == path)) is not None:
        raise AlreadyExistsError(f"Project '{path}' already exists", field="path")
    project = Project(path=path, name=name or path, description=description, visibility=visibility)
    session.add(project)
    await session.flush()
    session.add(
        Model(
            project_id=project.id,
            iid=0,
            name=DEFAULT_MODEL_NAME,
            display_name=DEFAULT_MODEL_DISPLAY_NAME,
        )
    )
    if owner is not None:
        session.add(Membership(project_id=project.id, user_id=owner.id, role=Role.OWNER))
    await session.flush()
    await audit.record(
        session, actor=actor, action="project.create", target=project, project_id=project.id
    )
    return project


async def create_project_on_request(
    session: AsyncSession, *, actor: Actor | None, path: str, description: str | None = None
) -> Project:
    """`create_project` asked for through an API (MLflow's `create_workspace`): only an
    administrator may, as only one runs `modelreg project create`; the creating user
    becomes the project's owner."""
    creator = policy.require_admin(actor)
    owner = await session.get(User, creator.user_id) if creator.user_id is not None else None
    return await create_project(
        session, path=path, description=description, owner=owner, actor=creator
    )


@overload
async def delete_project(
    session: AsyncSession, *, project: Project, actor: Actor | None, cascade: Literal[False] = ...
) -> None: ...


@overload
async def delete_project(
    session: AsyncSession, *, project: Project, actor: Actor | None, cascade: Literal[True]
) -> Job: ...


@overload
async def delete_project(
    session: AsyncSession, *, project: Project, actor: Actor | None, cascade: bool
) -> Job | None: ...


async def delete_project(
    session: AsyncSession, *, project: Project, actor: Actor | None, cascade: bool = False
) -> Job | None:
    """Delete a project (owners). An empty one goes at once with its `Default` model and
    memberships, and None is returned; with `cascade`, any project is marked pending
    destruction and the `delete_project` job doing the rest is returned."""
    await policy.authorize(session, actor, project, Operation.DELETE_PROJECT)
    if project.path == DEFAULT_PROJECT_PATH:
        raise InvalidValueError(f"The '{DEFAULT_PROJECT_PATH}' project cannot be deleted")
    if cascade:
        return await _destroy_project(session, project=project, actor=actor)
    held = []
    for what, query in (
        (
            "model(s)",
            sa.select(sa.func.count()).where(Model.project_id == project.id, Model.iid != 0),
        ),
        ("run(s)", sa.select(sa.func.count()).where(Candidate.project_id == project.id)),
        ("logged model(s)", sa.select(sa.func.count()).where(LoggedModel.project_id == project.id)),
        ("package(s)", sa.select(sa.func.count()).where(Package.project_id == project.id)),
    ):
        if count := await session.scalar(query):
            held.append(f"{count} {what}")
    if held:
        raise ProjectNotEmptyError(
            f"Cannot delete project '{project.path}': it still holds {', '.join(held)}. "
            "Delete them first."
        )
    await audit.record(
        session,
        actor=actor,
        action="project.delete",
        target=project,
        project_id=project.id,
        details={"path": project.path},
    )
    policy.forget_roles(session, project)
    await session.delete(project)
    await session.flush()
    return None


async def _destroy_project(session: AsyncSession, *, project: Project, actor: Actor | None) -> Job:
    path = project.path
    project.state = LifecycleState.PENDING_DESTRUCTION
    # The path is free for a new project at once; the one being destroyed holds
    # `<path>~destroyed~<id>`, which no valid path matches.
    suffix = f"~destroyed~{project.id}"
    project.path = f"{path[: _PATH_LENGTH - len(suffix)]}{suffix}"
    # What the project holds leaves every read with it, and no write can reach it any
    # more: one indexed UPDATE per table, as a model's destruction does.
    for table in (Model, Candidate, ModelVersion, LoggedModel):
        await session.execute(
            sa.update(table)
            .where(table.project_id == project.id)
            .values(state=LifecycleState.PENDING_DESTRUCTION)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    job = await jobs.enqueue(
        session,
        kind=jobs.DELETE_PROJECT,
        payload={"project_id": project.id, "path": path},
        project_id=project.id,
    )
    await audit.record(
        session,
        actor=actor,
        action="project.destroy",
        target=project,
        project_id=project.id,
        details={"path": path, "job_id": job.id},
    )
    policy.forget_roles(session, project)
    return job


def _names_nothing(path: str) -> bool:
    """Text no column can hold (NUL, a lone surrogate) names no project; PostgreSQL would
    refuse the query itself."""
    return "\x00" in path or any("\ud800" <= character <= "\udfff" for character in path)


async def _project_at(session: AsyncSession, path: str) -> Project | None:
    if _names_nothing(path):
        return None
    project: Project | None = await session.scalar(
        sa.select(Project).where(Project.path == path, _ACTIVE)
    )
    return project


async def get_project(session: AsyncSession, *, path: str) -> Project:
    project = await _project_at(session, path)
    if project is None:
        raise NotFoundError(f"Project '{path}' does not exist", field="path")
    return project


async def find_project(
    session: AsyncSession,
    *,
    actor: Actor | None,
    path: str,
    operation: Operation = Operation.READ,
) -> Project:
    """The project at `path` if `actor` may do `operation` there. A project the actor
    may not read is reported exactly like a missing one."""
    if actor is None or actor.user_id is None:
        project = await _project_at(session, path)
    else:
        # The project and the caller's role in it, in one round trip: every MLflow call
        # starts here.
        project, role = await _project_and_role_at(session, path, actor.user_id)
        if project is not None:
            policy.remember_role(session, actor, project, role)
    if project is None:
        if actor is None:
            raise UnauthenticatedError("authentication is required")
        raise NotFoundError(f"Project '{path}' does not exist", field="project")
    await policy.authorize(session, actor, project, operation)
    return project


async def _project_and_role_at(
    session: AsyncSession, path: str, user_id: int
) -> tuple[Project | None, Role | None]:
    if _names_nothing(path):
        return None, None
    found = (
        await session.execute(_PROJECT_AND_ROLE_AT, {"path": path, "user_id": user_id})
    ).first()
    return (None, None) if found is None else (found[0], found[1])


# Every MLflow call runs it: built once (see `app.db`).
_PROJECT_AND_ROLE_AT = (
    sa.select(Project, Membership.role)
    .outerjoin(
        Membership,
        sa.and_(Membership.project_id == Project.id, Membership.user_id == sa.bindparam("user_id")),
    )
    .where(Project.path == sa.bindparam("path"), _ACTIVE)
)


async def get_default_project(session: AsyncSession) -> Project:
    """The `default` project; a migration creates it, so it exists from the first start."""
    return await get_project(session, path=DEFAULT_PROJECT_PATH)


async def list_projects(session: AsyncSession, *, actor: Actor | None) -> list[Project]:
    """The projects `actor` may read: public ones, and those they are a member of."""
    query = sa.select(Project).where(_ACTIVE).order_by(Project.path)
    if actor is None:
        query = query.where(Project.visibility == Visibility.PUBLIC)
    elif not actor.is_admin:
        member_of = sa.select(Membership.project_id).where(
            Membership.user_id == actor.user_id, Membership.role >= Role.REPORTER
        )
        query = query.where(
            sa.or_(Project.visibility == Visibility.PUBLIC, Project.id.in_(member_of))
        )
    return list(await session.scalars(query))


async def update_project(
    session: AsyncSession,
    *,
    project: Project,
    actor: Actor | None,
    name: str | None = None,
    description: str | None = None,
    visibility: Visibility | None = None,
) -> Project:
    """Rename or describe a project (maintainers); change its visibility (owners)."""
    role = await policy.authorize(session, actor, project, Operation.UPDATE_PROJECT)
    if visibility is not None and visibility is not project.visibility:
        policy.check(actor, project, role, Operation.CHANGE_VISIBILITY)
        project.visibility = visibility
    if name is not None:
        if not name.strip():
            raise InvalidValueError("a project needs a name", field="name")
        project.name = name.strip()
    if description is not None:
        project.description = validation.description(description)
    await session.flush()
    await audit.record(
        session, actor=actor, action="project.update", target=project, project_id=project.id
    )
    return project


@functools.cache
def _next_iid_statement(counter: Literal["model", "candidate"]) -> sa.Update:
    column = Project.last_model_iid if counter == "model" else Project.last_candidate_iid
    return (
        sa.update(Project)
        .where(Project.id == sa.bindparam("project_id"))
        .values({column: column + 1})
        .returning(column)
    )


async def next_iid(
    session: AsyncSession, project: Project, counter: Literal["model", "candidate"]
) -> int:
    """Allocate the next project-scoped iid. The UPDATE locks the project row until
    commit, so concurrent creations in one project take their turns."""
    iid = await session.scalar(_next_iid_statement(counter), {"project_id": project.id})
    if iid is None:
        raise NotFoundError(f"Project '{project.path}' does not exist")
    return int(iid)


async def list_members(session: AsyncSession, *, project: Project) -> list[tuple[User, Role]]:
    rows = await session.execute(
        sa.select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project.id)
        .order_by(User.username)
    )
    return [(user, role) for user, role in rows]


async def set_member(
    session: AsyncSession, *, project: Project, user: User, role: Role, actor: Actor | None
) -> Membership:
    """Add a member or change their role. Maintainers manage members up to their own
    role; only owners make owners; the last owner cannot be demoted."""
    actor_role = await policy.authorize(session, actor, project, Operation.MANAGE_MEMBERS)
    _check_grantable(actor, actor_role, role)
    membership = await session.scalar(
        sa.select(Membership).where(
            Membership.project_id == project.id, Membership.user_id == user.id
        )
    )
    if membership is None:
        membership = Membership(project_id=project.id, user_id=user.id, role=role)
        session.add(membership)
        action = "member.add"
    else:
        _check_grantable(actor, actor_role, membership.role)
        if membership.role is Role.OWNER and role is not Role.OWNER:
            await _keep_an_owner(session, project)
        membership.role = role
        action = "member.update"
    await session.flush()
    policy.forget_roles(session, project)
    await audit.record(
        session,
        actor=actor,
        action=action,
        target=membership,
        project_id=project.id,
        details={"user": user.username, "role": role.name.lower()},
    )
    return membership


async def remove_member(
    session: AsyncSession, *, project: Project, user: User, actor: Actor | None
) -> None:
    actor_role = await policy.authorize(session, actor, project, Operation.MANAGE_MEMBERS)
    membership = await session.scalar(
        sa.select(Membership).where(
            Membership.project_id == project.id, Membership.user_id == user.id
        )
    )
    if membership is None:
        raise NotFoundError(f"'{user.username}' is not a member of '{project.path}'")
    _check_grantable(actor, actor_role, membership.role)
    if membership.role is Role.OWNER:
        await _keep_an_owner(session, project)
    policy.forget_roles(session, project)
    await audit.record(
        session,
        actor=actor,
        action="member.remove",
        target=membership,
        project_id=project.id,
        details={"user": user.username},
    )
    await session.delete(membership)
    await session.flush()


def _check_grantable(actor: Actor | None, actor_role: Role | None, role: Role) -> None:
    if actor is not None and actor.is_admin:
        return
    if actor_role is None or role > actor_role:
        raise ForbiddenError(
            f"a {actor_role.name.lower() if actor_role else 'non-member'} cannot manage "
            f"the {role.name.lower()} role",
            field="role",
        )


async def _keep_an_owner(session: AsyncSession, project: Project) -> None:
    owners = await session.scalar(
        sa.select(sa.func.count()).where(
            Membership.project_id == project.id, Membership.role == Role.OWNER
        )
    )
    if (owners or 0) <= 1:
        raise InvalidValueError(f"'{project.path}' must keep at least one owner", field="role")


async def get_projects(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Project]:
    return await rows_by_id(session, Project, ids, _ACTIVE)


async def roles_of(
    session: AsyncSession, *, actor: Actor | None, ids: Collection[int]
) -> dict[int, Role]:
    """The actor's role in each of the projects they are a member of, in one query."""
    if actor is None or actor.user_id is None or not ids:
        return {}
    found = await session.execute(
        sa.select(Membership.project_id, Membership.role).where(
            Membership.user_id == actor.user_id, Membership.project_id.in_(ids)
        )
    )
    return {project_id: role for project_id, role in found.all()}


async def readable_project_ids(
    session: AsyncSession, *, actor: Actor | None, ids: Collection[int]
) -> set[int]:
    """Which of the projects `actor` may read (the policy's READ), in one query."""
    if not ids:
        return set()
    projects = await get_projects(session, ids=ids)
    roles = await roles_of(session, actor=actor, ids=ids)
    return {
        project_id
        for project_id, project in projects.items()
        if policy.may_read(actor, project, roles.get(project_id))
    }
