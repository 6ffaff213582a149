"""Background jobs, as the mutations that start them return them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from app import models
from app.graphql.context import Info
from app.graphql.nodes import row_ids


@strawberry.type(description="Work done in the background: its status, progress and error.")
class Job(relay.Node):
    id: relay.NodeID[int]
    kind: str
    status: models.JobStatus
    progress: JSON
    attempts: int
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: models.Job) -> Job:
        return cls(
            id=row.id,
            kind=row.kind,
            status=row.status,
            progress=JSON(dict(row.progress or {})),
            attempts=row.attempts,
            error=row.last_error,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Job | None]:
        """A project's jobs are seen by whoever reads the project; jobs of no project
        (such as a migration of every project) by administrators."""
        rows = await info.context.loaders.job.load_many(row_ids(list(node_ids)))
        actor = info.context.actor
        admin = actor is not None and actor.is_admin
        project_ids = [row.project_id if row else None for row in rows]
        readable = await info.context.loaders.readable.load_many(
            [project_id for project_id in project_ids if project_id is not None]
        )
        allowed = dict(zip([p for p in project_ids if p is not None], readable, strict=True))
        found: list[Job | None] = []
        for row in rows:
            if row is None:
                found.append(None)
            elif row.project_id is None:
                found.append(cls.from_row(row) if admin else None)
            else:
                found.append(cls.from_row(row) if allowed[row.project_id] else None)
        return found


@strawberry.type(description="A change that goes on in the background; follow its job.")
class JobStarted:
    job: Job
