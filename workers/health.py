"""Whether this host's worker is alive: the record behind `modelreg worker --check`.

A running arq worker writes a health record to Redis from its main loop every
HEALTH_CHECK_INTERVAL (arq's `Worker.record_health`); the record expires one second
after the next write was due, and the worker deletes it when it stops. So the record
exists exactly while a worker on this host is running and reaching Redis: a stopped,
stuck or disconnected worker loses it within HEALTH_CHECK_INTERVAL + 1 s.

The key names the host (in compose, the container), so each container's health check
answers for its own worker rather than for any worker of the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from dataclasses import dataclass
from typing import Any

from arq.constants import default_queue_name, health_check_key_suffix
from redis.asyncio import Redis

from app.settings import Settings, SettingsError

HEALTH_CHECK_INTERVAL = dt.timedelta(seconds=10)

# The check itself must answer quickly, whatever state Redis is in.
REDIS_TIMEOUT_SECONDS = 3.0


def health_check_key(hostname: str | None = None) -> str:
    """The Redis key of the health record of the worker on `hostname` (default: this host)."""
    return f"{default_queue_name}{health_check_key_suffix}:{hostname or socket.gethostname()}"


def worker_health_options() -> dict[str, Any]:
    """The arq Worker arguments that make it keep this host's health record fresh."""
    return {"health_check_interval": HEALTH_CHECK_INTERVAL, "health_check_key": health_check_key()}


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    message: str


async def read_health(redis_url: str) -> HealthReport:
    """Whether a worker on this host has recorded its health recently."""
    redis = Redis.from_url(
        redis_url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    host = socket.gethostname()
    try:
        record = await redis.get(health_check_key(host))
    except Exception as error:
        return HealthReport(False, f"cannot read the worker's health from Redis: {error}")
    finally:
        await redis.aclose()
    if record is None:
        window = (HEALTH_CHECK_INTERVAL + dt.timedelta(seconds=1)).total_seconds()
        return HealthReport(
            False, f"no worker on {host} recorded its health in the last {window:.0f} s"
        )
    return HealthReport(True, f"the worker on {host} is healthy: {record.decode(errors='replace')}")


def check(settings: Settings) -> HealthReport:
    """`modelreg worker --check`: read this host's health record."""
    if not settings.redis_url:
        raise SettingsError("the worker health check needs MODELREG_REDIS_URL")
    return asyncio.run(read_health(settings.redis_url))
