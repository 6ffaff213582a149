"""Projects and their members."""

from __future__ import annotations

import datetime as dt

import strawberry

from app import models
from app.graphql.context import Info
from app.graphql.types.users import User
from app.services import policy, projects


@strawberry.type
class Member:
    user: User
    role: models.Role


@strawberry.type
class Project:
    path: str
    name: str
    description: str | None
    visibility: models.Visibility
    created_at: dt.datetime
    row: strawberry.Private[models.Project]

    @classmethod
    def from_row(cls, row: models.Project) -> Project:
        return cls(
            path=row.path,
            name=row.name,
            description=row.description,
            visibility=row.visibility,
            created_at=row.created_at,
            row=row,
        )

    @strawberry.field
    async def viewer_role(self, info: Info) -> models.Role | None:
        """The caller's role in this project, if they are a member."""
        async with info.context.database.session(read_only=True) as session:
            return await policy.role_in(session, info.context.actor, self.row)

    @strawberry.field
    async def members(self, info: Info) -> list[Member]:
        async with info.context.database.session(read_only=True) as session:
            rows = await projects.list_members(session, project=self.row)
        return [Member(user=User.from_row(user), role=role) for user, role in rows]
