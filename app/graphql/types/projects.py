"""Projects, their members and their jobs. A project is a Node (its global id resolves
through `node(id)` for whoever may read it); a member's `id` is the composite
``Member:<project row id>:<user row id>``, stable while the membership lasts, not a
global id."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import strawberry
from strawberry import relay

from app import models as rows
from app.errors import InvalidValueError, NotFoundError
from app.graphql import connections
from app.graphql.connections import Connection
from app.graphql.context import Info
from app.graphql.nodes import row_ids
from app.graphql.types.candidates import (
    Candidate,
    CandidateFilter,
    CandidateOrder,
    candidate_page,
)
from app.graphql.types.common import OrderDirection
from app.graphql.types.jobs import Job
from app.graphql.types.models import Model
from app.graphql.types.permissions import ProjectPermissions, permissions
from app.graphql.types.users import User
from app.graphql.types.webhooks import Webhook
from app.services import candidates, jobs, keyset, policy, projects, webhooks
from app.services import models as model_service
from app.services.models import ModelSort
from app.web_paths import project_page

strawberry.enum(ModelSort, name="ModelOrderField")


@strawberry.input
class ModelOrder:
    field: ModelSort = ModelSort.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type
class Member:
    user: User
    role: rows.Role
    project_id: strawberry.Private[int]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Member:{self.project_id}:{self.user.user_id}")


@strawberry.type(
    description="A project: what MLflow calls a workspace. Its path is the workspace's name "
    "(`mlflow.set_workspace(path)`), and `default` is MLflow's default workspace."
)
class Project(relay.Node):
    id: relay.NodeID[int]
    path: str
    name: str
    description: str | None
    visibility: rows.Visibility
    created_at: dt.datetime
    row: strawberry.Private[rows.Project]

    @classmethod
    def from_row(cls, row: rows.Project) -> Project:
        return cls(
            id=row.id,
            path=row.path,
            name=row.name,
            description=row.description,
            visibility=row.visibility,
            created_at=row.created_at,
            row=row,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Project | None]:
        ids = row_ids(list(node_ids))
        found = await info.context.loaders.project.load_many(ids)
        readable = await info.context.loaders.readable.load_many(ids)
        return [
            cls.from_row(row) if row is not None and flag else None
            for row, flag in zip(found, readable, strict=True)
        ]

    @strawberry.field
    def web_path(self) -> str:
        """The project's page in the web UI: /<project path>."""
        return project_page(self.path)

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        status: list[rows.JobStatus] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Job] | None:
        """The project's background jobs, newest first; those in `status` when given."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        query, sort = jobs.sorted_project_jobs(self.row.id, statuses=status)
        async with info.context.database.session(read_only=True) as session:
            page = await keyset.read(session, query, sort, window)
        return connections.connection(page, Job.from_row)

    @strawberry.field
    async def webhooks(self, info: Info) -> list[Webhook] | None:
        """The project's webhooks, oldest first (maintainers may see them)."""
        async with info.context.database.session(read_only=True) as session:
            found, _ = await webhooks.list_webhooks(
                session, project=self.row, actor=info.context.actor
            )
        return [Webhook.from_row(row) for row in found]

    @strawberry.field
    async def viewer_role(self, info: Info) -> rows.Role | None:
        """The caller's role in this project, if they are a member."""
        async with info.context.database.session(read_only=True) as session:
            return await policy.role_in(session, info.context.actor, self.row)

    @strawberry.field
    async def user_permissions(self, info: Info) -> ProjectPermissions:
        """What the caller may do in this project: the buttons a UI shows."""
        return await permissions(info, ProjectPermissions, self.row.id)

    @strawberry.field
    async def members(self, info: Info) -> list[Member]:
        async with info.context.database.session(read_only=True) as session:
            rows = await projects.list_members(session, project=self.row)
        return [
            Member(user=User.from_row(user), role=role, project_id=self.row.id)
            for user, role in rows
        ]

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
    ) -> Connection[Model] | None:
        """The project's models whose name or display name contains `search`."""
        order = order_by or ModelOrder()
        window = connections.window(info, first=first, after=after, last=last, before=before)
        query, sort = model_service.sorted_models(
            self.row, search=search, sort=order.field, ascending=order.direction.ascending
        )
        async with info.context.database.session(read_only=True) as session:
            page = await keyset.read(session, query, sort, window)
        return connections.connection(page, Model.from_row)

    @strawberry.field
    async def model(
        self,
        info: Info,
        name: str | None = None,
        iid: int | None = None,
        display_name: str | None = None,
    ) -> Model | None:
        """A model by its name (slug), its iid (MLflow's experiment id) or its display name
        (MLflow's registered model name): exactly one of them."""
        if [name, iid, display_name].count(None) != 2:
            raise InvalidValueError(
                "Pass exactly one of `name`, `iid` and `displayName`", field="name"
            )
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await model_service.get_model(
                    session, project=self.row, name=name, iid=iid, display_name=display_name
                )
            except NotFoundError:
                return None
        return Model.from_row(row)

    @strawberry.field
    async def candidate(
        self, info: Info, run_id: str | None = None, iid: int | None = None
    ) -> Candidate | None:
        """A candidate of any of the project's models, deleted or not, by its MLflow run
        id or its iid: exactly one of them."""
        if (run_id is None) == (iid is None):
            raise InvalidValueError("Pass exactly one of `runId` and `iid`", field="runId")
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await candidates.get_candidate(
                    session, project=self.row, eid=run_id, iid=iid, include_deleted=True
                )
            except NotFoundError:
                return None
        return Candidate.from_row(row)

    @strawberry.field
    async def candidates(
        self,
        info: Info,
        models: list[str] | None = None,
        filter: CandidateFilter | None = None,
        order_by: CandidateOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Candidate] | None:
        """The candidates of the project's models, or of those named in `models`, as one
        list filtered and ordered as a model's candidates are (MLflow's search over
        several experiments)."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        search = functools.partial(candidates.search_project, project=self.row, model_names=models)
        return await candidate_page(info, search, filter, order_by, window)
