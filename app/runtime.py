"""What a running API process holds: settings, the database, and its clients."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from app.db import Database
from app.events import EventHub
from app.services.sign_in_limits import SignInLimits
from app.settings import Settings
from app.storage import ArtifactStore


@dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: Redis | None
    artifacts: ArtifactStore
    # Change events for GraphQL subscriptions (through Redis when it is configured).
    events: EventHub

    @cached_property
    def sign_in_limits(self) -> SignInLimits:
        return SignInLimits(self.settings, self.redis)


def get_runtime(request: HTTPConnection) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
