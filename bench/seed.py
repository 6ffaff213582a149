"""Bulk seeding of candidates straight into modelreg's tables, for the scaling rows.

Seeding 100,000 runs through HTTP takes far too long; these rows are what logging each
run's params and one step of its metrics through MLflow would leave behind (candidates,
params, metric history and latest metrics), written with multi-row INSERTs through
modelreg's own models and session factory.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.models import (
    Candidate,
    CandidateLatestMetric,
    CandidateMetric,
    CandidateParam,
    CandidateStatus,
    Model,
    Project,
)
from bench.shapes import search_run_values

BATCH = 2000
ANALYZED_TABLES = (
    Candidate.__tablename__,
    CandidateParam.__tablename__,
    CandidateMetric.__tablename__,
    CandidateLatestMetric.__tablename__,
)


async def _seed(database_url: str, model_name: str, count: int, project_path: str) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            project = await session.scalar(sa.select(Project).where(Project.path == project_path))
            if project is None:
                raise RuntimeError(f"no project '{project_path}'")
            model = await session.scalar(
                sa.select(Model).where(Model.project_id == project.id, Model.name == model_name)
            )
            if model is None:
                raise RuntimeError(f"no model '{model_name}' in project '{project_path}'")
            project_id, model_id = project.id, model.id
        start = int(time.time() * 1000)
        for offset in range(0, count, BATCH):
            size = min(BATCH, count - offset)
            async with database.session() as session:
                await _insert_batch(session, project_id, model_id, offset, size, start)
        # What autovacuum does soon after a load this size; the planner needs it.
        async with database.session() as session:
            for table in ANALYZED_TABLES:
                await session.execute(sa.text(f"ANALYZE {table}"))
    finally:
        await database.dispose()


async def _insert_batch(
    session: Any,
    project_id: int,
    model_id: int,
    offset: int,
    size: int,
    start: int,
) -> None:
    last_iid = await session.scalar(
        sa.update(Project)
        .where(Project.id == project_id)
        .values(last_candidate_iid=Project.last_candidate_iid + size)
        .returning(Project.last_candidate_iid)
    )
    first_iid = int(last_iid) - size + 1
    rows = [
        {
            "project_id": project_id,
            "model_id": model_id,
            "iid": first_iid + i,
            "eid": uuid.uuid4().hex,
            "name": f"seeded-{offset + i}",
            "status": CandidateStatus.FINISHED,
            "start_time": start + offset + i,
            "end_time": start + offset + i + 1,
        }
        for i in range(size)
    ]
    ids = list(
        await session.scalars(
            sa.insert(Candidate).returning(Candidate.id, sort_by_parameter_order=True), rows
        )
    )
    params, history, latest = [], [], []
    for i, candidate_id in enumerate(ids):
        run_params, run_metrics = search_run_values(offset + i)
        params += [
            {"candidate_id": candidate_id, "name": name, "value": value}
            for name, value in run_params.items()
        ]
        for name, value in run_metrics.items():
            point = {
                "candidate_id": candidate_id,
                "name": name,
                "value": value,
                "is_nan": math.isnan(value),
                "step": 0,
                "timestamp": start + offset + i,
            }
            history.append(point)
            latest.append(point | {"model_id": model_id})
    await session.execute(sa.insert(CandidateParam), params)
    await session.execute(sa.insert(CandidateMetric), history)
    await session.execute(sa.insert(CandidateLatestMetric), latest)


def seed_candidates(
    database_url: str, model_name: str, count: int, project_path: str = "default"
) -> float:
    """Add `count` finished candidates to a model; returns the seconds it took."""
    started = time.perf_counter()
    url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(_seed(url, model_name, count, project_path))
    return time.perf_counter() - started
