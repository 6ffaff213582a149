"""The root Query type."""

from __future__ import annotations

from typing import TypeVar

import strawberry
from strawberry import relay

import app
from app.errors import DomainError
from app.graphql.context import Info
from app.graphql.nodes import row_id
from app.graphql.types.candidates import Candidate
from app.graphql.types.jobs import Job
from app.graphql.types.models import Model, ModelVersion
from app.graphql.types.projects import Project
from app.graphql.types.users import AccessToken, User
from app.services import auth, projects, users


@strawberry.type
class Viewer:
    """The authenticated caller."""

    user: User
    username: strawberry.Private[str]

    @strawberry.field
    async def tokens(self, info: Info) -> list[AccessToken]:
        async with info.context.database.session(read_only=True) as session:
            user = await users.get_user(session, username=self.username)
            return [AccessToken.from_row(row) for row in await auth.list_tokens(session, user=user)]


N = TypeVar("N", Model, ModelVersion, Candidate, Job)


async def _lookup(info: Info, node_type: type[N], id: relay.GlobalID) -> N | None:
    """The node a global id of `node_type` names; null when missing or hidden."""
    [found] = await node_type.resolve_nodes(
        info=info, node_ids=[str(row_id(id, node_type.__name__))]
    )
    return found


@strawberry.type
class Query:
    node: relay.Node | None = relay.node(description="Any object by its global id.")
    nodes: list[relay.Node | None] = relay.node(description="Objects by their global ids.")

    @strawberry.field
    async def model(self, info: Info, id: relay.GlobalID) -> Model | None:
        return await _lookup(info, Model, id)

    @strawberry.field
    async def model_version(self, info: Info, id: relay.GlobalID) -> ModelVersion | None:
        return await _lookup(info, ModelVersion, id)

    @strawberry.field
    async def candidate(self, info: Info, id: relay.GlobalID) -> Candidate | None:
        return await _lookup(info, Candidate, id)

    @strawberry.field
    async def job(self, info: Info, id: relay.GlobalID) -> Job | None:
        """A background job, e.g. one a deletion started."""
        return await _lookup(info, Job, id)

    @strawberry.field
    def version(self) -> str:
        return app.__version__

    @strawberry.field
    async def viewer(self, info: Info) -> Viewer | None:
        actor = info.context.actor
        if actor is None:
            return None
        async with info.context.database.session(read_only=True) as session:
            user = await users.get_user(session, username=actor.username)
        return Viewer(user=User.from_row(user), username=user.username)

    @strawberry.field
    async def project(self, info: Info, path: str) -> Project | None:
        """A project the caller may read; null when it does not exist or is hidden."""
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await projects.find_project(session, actor=info.context.actor, path=path)
            except DomainError:
                return None
        return Project.from_row(row)

    @strawberry.field
    async def projects(self, info: Info) -> list[Project]:
        """The projects the caller may read."""
        async with info.context.database.session(read_only=True) as session:
            rows = await projects.list_projects(session, actor=info.context.actor)
        return [Project.from_row(row) for row in rows]
