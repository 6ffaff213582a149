"""Starting the package type migration of legacy candidate artifacts."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import NotFoundError, PermissionError, ValidationError
from app.graphql.types.jobs import Job, JobStarted
from app.services import packages, projects

PackageTypesMigrateResult = Annotated[
    JobStarted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("PackageTypesMigrateResult"),
]


@strawberry.input
class PackageTypesMigrateInput:
    project: str | None = strawberry.field(
        default=None, description="A project's path; every project (administrators) if omitted."
    )


async def package_types_migrate(
    info: Info, input: PackageTypesMigrateInput
) -> PackageTypesMigrateResult:
    """Turn the legacy `generic` packages of candidates into `ml_model` packages, in a
    job; while one is waiting or running for the same scope, that job is returned."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        project = None
        if input.project is not None:
            project = await projects.find_project(session, actor=actor, path=input.project)
        job = await packages.request_package_type_migration(session, project=project, actor=actor)
    return JobStarted(job=Job.from_row(job))
