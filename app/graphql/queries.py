"""The root Query type."""

from __future__ import annotations

import strawberry

import app
from app.errors import DomainError
from app.graphql.context import Info
from app.graphql.types.projects import Project
from app.graphql.types.users import AccessToken, User
from app.services import auth, projects, users
from app.services.policy import Action


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


@strawberry.type
class Query:
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
                row = await projects.find_project(
                    session, actor=info.context.actor, path=path, action=Action.READ
                )
            except DomainError:
                return None
        return Project.from_row(row)

    @strawberry.field
    async def projects(self, info: Info) -> list[Project]:
        """The projects the caller may read."""
        async with info.context.database.session(read_only=True) as session:
            rows = await projects.list_projects(session, actor=info.context.actor)
        return [Project.from_row(row) for row in rows]
