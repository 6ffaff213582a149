"""Background jobs: what the mutations that start them return, and a project's `jobs`.

A job's `target` is the object it works on, while the caller may read it: the model,
version or candidate a deletion removes (null as soon as the deletion is asked for: the
object is gone from every read at once), the project a package type migration works
through (null for one of every project), the version or candidate whose package an
upload's verification checks (for a logged model's package, the candidate that logged
it), nothing for a purge of deleted runs. Its `progress` counts what is done, with
`total` where the job knows it up front, beside the job's own `details`:

- ``delete_model``, ``delete_version``, ``delete_candidate``: rows removed (candidates,
  versions, logged models, metric values and files); no total, since counting millions of
  metric values first is the work the job exists to spread out;
- ``purge_deleted_runs``: candidates purged; no total;
- ``migrate_package_types``: packages migrated or skipped; no total;
- ``finalize_upload``: one file, total 1, done once the job finished.
- ``import_mlflow``: the units of the import's phases started so far (experiments, runs,
  logged models, artifact owners, registered models, deleted experiments); `details`
  has each phase's counts and bytes, and once it ended the summary of what it wrote.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from app import models
from app.graphql.context import Info
from app.graphql.nodes import row_ids
from app.graphql.types.common import Long
from app.services import jobs

# The progress entries that count a deletion's removed rows.
_REMOVED = ("candidates", "versions", "logged_models", "metrics", "files")


@strawberry.type(description="How far a job got: `total` is null when the job cannot know it.")
class JobProgress:
    done: Long
    total: Long | None
    details: JSON = strawberry.field(description="What the job records as it goes, by name.")

    @classmethod
    def of(cls, row: models.Job) -> JobProgress:
        recorded = dict(row.progress or {})
        total: int | None = None
        if row.kind in (jobs.DELETE_MODEL, jobs.DELETE_VERSION, jobs.DELETE_CANDIDATE):
            done = sum(int(recorded.get(name, 0)) for name in _REMOVED)
        elif row.kind == jobs.PURGE_DELETED_RUNS:
            done = int(recorded.get("purged", 0))
        elif row.kind == jobs.MIGRATE_PACKAGE_TYPES:
            done = int(recorded.get("migrated", 0)) + int(recorded.get("skipped", 0))
        elif row.kind == jobs.IMPORT_MLFLOW:
            phases = dict(recorded.get("phases") or {}).values()
            done = sum(int(phase["done"]) for phase in phases)
            total = sum(int(phase["total"]) for phase in phases)
        elif row.kind == jobs.FINALIZE_UPLOAD:
            finished = row.status in (models.JobStatus.SUCCEEDED, models.JobStatus.FAILED)
            done, total = int(finished), 1
        else:
            done = 0
        return cls(
            done=Long(done), total=None if total is None else Long(total), details=JSON(recorded)
        )


@strawberry.type(description="Work done in the background: its status, progress and error.")
class Job(relay.Node):
    id: relay.NodeID[int]
    kind: str
    status: models.JobStatus
    progress: JobProgress
    attempts: int
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    row: strawberry.Private[models.Job]

    @classmethod
    def from_row(cls, row: models.Job) -> Job:
        return cls(
            id=row.id,
            kind=row.kind,
            status=row.status,
            progress=JobProgress.of(row),
            attempts=row.attempts,
            error=row.last_error,
            created_at=row.created_at,
            finished_at=row.finished_at,
            row=row,
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

    @strawberry.field
    async def target(self, info: Info) -> relay.Node | None:
        """The object the job works on, while it exists and is readable."""
        from app.graphql.types.candidates import Candidate
        from app.graphql.types.models import Model, ModelVersion
        from app.graphql.types.projects import Project

        payload = self.row.payload or {}
        kind = self.row.kind
        if kind == jobs.DELETE_MODEL and "model_id" in payload:
            [model] = await Model.resolve_nodes(info=info, node_ids=[str(payload["model_id"])])
            return model
        if kind == jobs.DELETE_VERSION and "version_id" in payload:
            node_ids = [str(payload["version_id"])]
            [version] = await ModelVersion.resolve_nodes(info=info, node_ids=node_ids)
            return version
        if kind == jobs.DELETE_CANDIDATE and "candidate_id" in payload:
            node_ids = [str(payload["candidate_id"])]
            [candidate] = await Candidate.resolve_nodes(info=info, node_ids=node_ids)
            return candidate
        if kind == jobs.MIGRATE_PACKAGE_TYPES and payload.get("project_id") is not None:
            node_ids = [str(payload["project_id"])]
            [project] = await Project.resolve_nodes(info=info, node_ids=node_ids)
            return project
        if kind == jobs.FINALIZE_UPLOAD and "package_id" in payload:
            async with info.context.database.session(read_only=True) as session:
                holder = await jobs.package_holder(session, package_id=payload["package_id"])
            if isinstance(holder, models.ModelVersion):
                [version] = await ModelVersion.resolve_nodes(info=info, node_ids=[str(holder.id)])
                return version
            if holder is not None:
                [candidate] = await Candidate.resolve_nodes(info=info, node_ids=[str(holder.id)])
                return candidate
        return None


@strawberry.type(description="A change that goes on in the background; follow its job.")
class JobStarted:
    job: Job
