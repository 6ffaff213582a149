"""Creating and changing projects, and managing their members."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import ConflictError, NotFoundError, PermissionError, ValidationError
from app.graphql.types.jobs import Job, JobStarted
from app.graphql.types.projects import Member, Project
from app.graphql.types.users import User
from app.models import Role, Visibility
from app.services import policy, projects, users

ProjectResult = Annotated[
    Project | ValidationError | ConflictError | NotFoundError | PermissionError,
    strawberry.union("ProjectResult"),
]
ProjectDeleteResult = Annotated[
    JobStarted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("ProjectDeleteResult"),
]
MemberResult = Annotated[
    Member | ValidationError | NotFoundError | PermissionError,
    strawberry.union("MemberResult"),
]


@strawberry.type
class MemberRemoved:
    project: str
    username: str


MemberRemoveResult = Annotated[
    MemberRemoved | ValidationError | NotFoundError | PermissionError,
    strawberry.union("MemberRemoveResult"),
]


@strawberry.input
class ProjectCreateInput:
    path: str
    name: str | None = None
    description: str | None = None
    visibility: Visibility = Visibility.PRIVATE


@strawberry.input
class ProjectUpdateInput:
    path: str
    name: str | None = None
    description: str | None = None
    visibility: Visibility | None = None


@strawberry.input
class ProjectDeleteInput:
    path: str


@strawberry.input
class MemberSetInput:
    project: str
    username: str
    role: Role


@strawberry.input
class MemberRemoveInput:
    project: str
    username: str


async def project_create(info: Info, input: ProjectCreateInput) -> ProjectResult:
    """Create a project; the caller becomes its owner."""
    actor = policy.require_user(info.context.actor, write=True)
    async with info.context.database.session() as session:
        owner = await users.get_user(session, username=actor.username)
        row = await projects.create_project(
            session,
            path=input.path,
            name=input.name,
            description=input.description,
            visibility=input.visibility,
            owner=owner,
            actor=actor,
        )
    return Project.from_row(row)


async def project_update(info: Info, input: ProjectUpdateInput) -> ProjectResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await projects.find_project(session, actor=actor, path=input.path)
        await projects.update_project(
            session,
            project=row,
            actor=actor,
            name=input.name,
            description=input.description,
            visibility=input.visibility,
        )
    return Project.from_row(row)


async def project_delete(info: Info, input: ProjectDeleteInput) -> ProjectDeleteResult:
    """Delete a project with everything in it (owners; MLflow's CASCADE deletion of a
    workspace): it is gone from every read and its path is free at once, and the returned
    job removes its models, runs, packages and artifacts in the background."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await projects.find_project(session, actor=actor, path=input.path)
        job = await projects.delete_project(session, project=row, actor=actor, cascade=True)
    return JobStarted(job=Job.from_row(job))


async def member_set(info: Info, input: MemberSetInput) -> MemberResult:
    """Add a member to a project, or change their role."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        project = await projects.find_project(session, actor=actor, path=input.project)
        user = await users.get_user(session, username=input.username)
        await projects.set_member(session, project=project, user=user, role=input.role, actor=actor)
    return Member(user=User.from_row(user), role=input.role, project_id=project.id)


async def member_remove(info: Info, input: MemberRemoveInput) -> MemberRemoveResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        project = await projects.find_project(session, actor=actor, path=input.project)
        user = await users.get_user(session, username=input.username)
        await projects.remove_member(session, project=project, user=user, actor=actor)
    return MemberRemoved(project=input.project, username=input.username)
