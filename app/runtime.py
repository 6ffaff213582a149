"""What a running API process holds: settings, the database, and its clients."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.requests import Request

from app.db import Database
from app.settings import Settings
from app.storage import ArtifactStore


@dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: Redis | None
    artifacts: ArtifactStore


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
