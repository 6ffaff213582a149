"""Projects and their members."""

from __future__ import annotations

import datetime as dt

import strawberry

from app import models as rows
from app.errors import NotFoundError
from app.graphql.connections import Connection, paginate
from app.graphql.context import Info
from app.graphql.types.common import OrderDirection
from app.graphql.types.models import Model
from app.graphql.types.users import User
from app.services import models as model_service
from app.services import policy, projects
from app.services.models import ModelSort

strawberry.enum(ModelSort, name="ModelOrderField")


@strawberry.input
class ModelOrder:
    field: ModelSort = ModelSort.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type
class Member:
    user: User
    role: rows.Role


@strawberry.type
class Project:
    path: str
    name: str
    description: str | None
    visibility: rows.Visibility
    created_at: dt.datetime
    row: strawberry.Private[rows.Project]

    @classmethod
    def from_row(cls, row: rows.Project) -> Project:
        return cls(
            path=row.path,
            name=row.name,
            description=row.description,
            visibility=row.visibility,
            created_at=row.created_at,
            row=row,
        )

    @strawberry.field
    async def viewer_role(self, info: Info) -> rows.Role | None:
        """The caller's role in this project, if they are a member."""
        async with info.context.database.session(read_only=True) as session:
            return await policy.role_in(session, info.context.actor, self.row)

    @strawberry.field
    async def members(self, info: Info) -> list[Member]:
        async with info.context.database.session(read_only=True) as session:
            rows = await projects.list_members(session, project=self.row)
        return [Member(user=User.from_row(user), role=role) for user, role in rows]

    @strawberry.field
    async def models(
        self,
        info: Info,
        search: str | None = None,
        order_by: ModelOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Model]:
        """The project's models whose name or display name contains `search`."""
        order = order_by or ModelOrder()
        query, sort = model_service.sorted_models(
            self.row, search=search, sort=order.field, ascending=order.direction.ascending
        )
        return await paginate(
            info.context.database,
            query,
            sort,
            first=first,
            after=after,
            last=last,
            before=before,
            node=Model.from_row,
        )

    @strawberry.field
    async def model(self, info: Info, name: str) -> Model | None:
        """A model by its name (slug)."""
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await model_service.get_model(session, project=self.row, name=name)
            except NotFoundError:
                return None
        return Model.from_row(row)
