"""Importing an MLflow server into a project, as a job (maintainers)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import ConflictError, NotFoundError, PermissionError, ValidationError
from app.graphql.types.jobs import Job, JobStarted
from app.importing import job as importing
from app.runtime import get_runtime
from app.services import projects

ProjectImportMlflowResult = Annotated[
    JobStarted | ValidationError | ConflictError | NotFoundError | PermissionError,
    strawberry.union("ProjectImportMlflowResult"),
]


@strawberry.input
class ProjectImportMlflowInput:
    project: str = strawberry.field(description="The path of the project imported into.")
    source_uri: str = strawberry.field(description="The MLflow tracking server's http(s) URL.")
    token: str | None = strawberry.field(
        default=None,
        description="Sent to the source as a bearer token; kept encrypted until the job ends.",
    )
    experiments: list[str] | None = strawberry.field(
        default=None, description="Experiments by name or id; all when omitted."
    )
    models: list[str] | None = strawberry.field(
        default=None, description="Registered models by name; all when omitted."
    )
    since: dt.datetime | None = strawberry.field(
        default=None, description="Only runs started at or after this time."
    )


async def project_import_mlflow(
    info: Info, input: ProjectImportMlflowInput
) -> ProjectImportMlflowResult:
    """Import an MLflow server's experiments, runs (same ids), artifacts, logged models
    and registry into the project, in a job whose progress counts each phase; run again,
    it imports only what is new."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        project = await projects.find_project(session, actor=actor, path=input.project)
        job = await importing.request_import(
            session,
            project=project,
            source_url=input.source_uri,
            token=input.token,
            experiments=input.experiments,
            models=input.models,
            since=input.since,
            settings=get_runtime(info.context.request).settings,
            actor=actor,
        )
    return JobStarted(job=Job.from_row(job))
