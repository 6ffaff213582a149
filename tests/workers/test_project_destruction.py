"""Destroying a project with everything in it (`projects.delete_project` with `cascade`,
MLflow's CASCADE deletion of a workspace): the request hides the project and all it holds
at once and frees its path; the `delete_project` job then removes every row and stored
object of it, in batches that a retry resumes, and leaves other projects alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database, utcnow
from app.errors import InvalidValueError, NotFoundError
from app.models import Job, JobStatus, LifecycleState, Model, Project
from app.services import jobs, projects
from app.services.actor import OPERATOR
from app.settings import Settings
from app.storage import ArtifactStore
from tests.workers.test_destruction import (
    audit_events,
    build_model,
    load_job,
    rows_left,
    stored_keys,
)
from workers.jobs import destruction
from workers.runner import run_job


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    """Artifacts in a local directory, retries milliseconds apart."""
    return Settings(
        database_url=database.url,
        artifacts=str(tmp_path / "artifacts"),
        job_retry_base_seconds=0.01,
        job_retry_max_seconds=0.05,
    )


async def _create_project(database: Database, path: str) -> Project:
    async with database.session() as session:
        return await projects.create_project(session, path=path, actor=OPERATOR)


async def test_a_project_destruction_hides_it_at_once_and_a_retried_job_removes_all_of_it(
    database: Database,
    settings: Settings,
    store: ArtifactStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doomed = await _create_project(database, "doomed")
    kept = await _create_project(database, "kept")
    churn = await build_model(
        database,
        store,
        doomed,
        "Churn",
        candidate_count=8,
        metrics_per_candidate=5,
        files_every=1,
        with_version=True,
    )
    fraud = await build_model(
        database,
        store,
        doomed,
        "Fraud",
        candidate_count=4,
        metrics_per_candidate=5,
        files_every=2,
    )
    survivor = await build_model(
        database,
        store,
        kept,
        "Churn",
        candidate_count=2,
        metrics_per_candidate=5,
        files_every=1,
        with_version=True,
    )
    survivor_rows = await rows_left(database, survivor)

    async with database.session() as session:
        project = await projects.get_project(session, path="doomed")
        job = await projects.delete_project(session, project=project, actor=OPERATOR, cascade=True)

    # Gone from every read at once, with all it holds; its path is free for a new project.
    async with database.session() as session:
        with pytest.raises(NotFoundError, match="Project 'doomed' does not exist"):
            await projects.find_project(session, actor=OPERATOR, path="doomed")
        assert [row.path for row in await projects.list_projects(session, actor=OPERATOR)] == [
            "default",
            "kept",
        ]
        states = set(
            await session.scalars(sa.select(Model.state).where(Model.project_id == doomed.id))
        )
        assert states == {LifecycleState.PENDING_DESTRUCTION}
    reborn = await _create_project(database, "doomed")

    # The worker dies right after deleting the second batch's objects, before its rows.
    monkeypatch.setattr(destruction, "BATCH_SIZE", 5)
    delete_many = store.delete_many
    calls = 0

    async def delete_then_die(keys: Any) -> None:
        nonlocal calls
        calls += 1
        await delete_many(keys)
        if calls == 2:
            raise RuntimeError("worker killed")

    monkeypatch.setattr(store, "delete_many", delete_then_die)
    await run_job(database, settings, job.id, artifacts=store)
    monkeypatch.setattr(store, "delete_many", delete_many)
    interrupted = await load_job(database, job.id)
    assert (interrupted.status, interrupted.last_error) == (
        JobStatus.PENDING,
        "RuntimeError: worker killed",
    )
    assert interrupted.progress["candidates"] == 5
    async with database.session() as session:
        await session.execute(sa.update(Job).where(Job.id == job.id).values(run_after=utcnow()))

    await run_job(database, settings, job.id, artifacts=store)

    finished = await load_job(database, job.id)
    assert (finished.status, finished.attempts) == (JobStatus.SUCCEEDED, 2)
    assert {
        name: finished.progress[name] for name in ("candidates", "versions", "logged_models")
    } == {
        "candidates": 12,
        "versions": 1,
        "logged_models": 1,
    }
    assert finished.progress["objects"] == len(churn.keys | fraud.keys)
    assert await rows_left(database, churn) == {}
    assert await rows_left(database, fraud) == {}
    assert await rows_left(database, survivor) == survivor_rows
    assert await stored_keys(store) == survivor.keys
    async with database.session(read_only=True) as session:
        assert await session.get(Project, doomed.id) is None
        left = await session.scalar(sa.select(sa.func.count()).where(Model.project_id == doomed.id))
        assert left == 0
        paths = [row.path for row in await projects.list_projects(session, actor=OPERATOR)]
        assert paths == ["default", "doomed", "kept"]
        assert (await projects.get_project(session, path="doomed")).id == reborn.id
    [destroyed] = await audit_events(database, "project.destroyed")
    assert destroyed.project_id == doomed.id
    assert destroyed.details == {"path": "doomed", "job_id": job.id, **finished.progress}
    assert finished.kind == jobs.DELETE_PROJECT


async def test_the_default_project_is_never_destroyed(database: Database) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        with pytest.raises(InvalidValueError, match="The 'default' project cannot be deleted"):
            await projects.delete_project(session, project=project, actor=OPERATOR, cascade=True)
