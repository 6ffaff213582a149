"""Projects: the unit of ownership; every model, candidate and package lives in one."""

from __future__ import annotations

import re
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import Model, Project, Visibility

DEFAULT_PROJECT_PATH = "default"
DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_DISPLAY_NAME = "Default"

_PROJECT_PATH = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


async def create_project(
    session: AsyncSession,
    *,
    path: str,
    name: str | None = None,
    description: str | None = None,
    visibility: Visibility = Visibility.PRIVATE,
) -> Project:
    """Create a project with its `Default` model (MLflow's experiment 0)."""
    if not _PROJECT_PATH.match(path):
        raise InvalidValueError(
            f"'{path}' is not a valid project path: lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit, at most 100 characters",
            field="path",
        )
    if await session.scalar(sa.select(Project.id).where(Project.path == path)) is not None:
        raise AlreadyExistsError(f"Project '{path}' already exists", field="path")
    project = Project(path=path, name=name or path, description=description, visibility=visibility)
    session.add(project)
    await session.flush()
    session.add(
        Model(
            project_id=project.id,
            iid=0,
            name=DEFAULT_MODEL_NAME,
            display_name=DEFAULT_MODEL_DISPLAY_NAME,
        )
    )
    await session.flush()
    return project


async def get_project(session: AsyncSession, *, path: str) -> Project:
    project = await session.scalar(sa.select(Project).where(Project.path == path))
    if project is None:
        raise NotFoundError(f"Project '{path}' does not exist", field="path")
    return project


async def get_default_project(session: AsyncSession) -> Project:
    """The `default` project; a migration creates it, so it exists from the first start."""
    return await get_project(session, path=DEFAULT_PROJECT_PATH)


async def next_iid(
    session: AsyncSession, project: Project, counter: Literal["model", "candidate"]
) -> int:
    """Allocate the next project-scoped iid. The UPDATE locks the project row until
    commit, so concurrent creations in one project take their turns."""
    column = Project.last_model_iid if counter == "model" else Project.last_candidate_iid
    iid = await session.scalar(
        sa.update(Project)
        .where(Project.id == project.id)
        .values({column: column + 1})
        .returning(column)
    )
    if iid is None:
        raise NotFoundError(f"Project '{project.path}' does not exist")
    return int(iid)
