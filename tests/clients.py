"""Driving the in-process app over HTTP in tests, and waiting for the jobs it started."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from app.db import Database
from app.main import create_app
from app.models import Job, JobStatus
from app.settings import Settings
from workers.dispatch import create_dispatcher


def app_settings(tmp_path: Path, database_url: str, redis_url: str | None = None) -> Settings:
    """Settings naming every location, so no MODELREG_* variable of the caller leaks in."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        artifacts=str(artifacts),
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and a client that talks to it in process."""
    app = create_app(settings, dispatcher_factory=create_dispatcher)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://modelreg.test"
        ) as client,
    ):
        yield client


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    token: str | None = None,
    **variables: Any,
) -> dict[str, Any]:
    """POST a GraphQL document; returns `data`, failing the test on transport errors."""
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def jobs_settled(database: Database) -> None:
    """Wait until the server's in-process runner finished every job; fail on a failed one."""
    for _ in range(600):
        async with database.session(read_only=True) as session:
            statuses = list(await session.scalars(sa.select(Job.status)))
        assert JobStatus.FAILED not in statuses
        if all(status is JobStatus.SUCCEEDED for status in statuses):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"jobs still unfinished: {statuses}")
