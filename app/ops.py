"""Probes for orchestrators: liveness and readiness."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import migrations
from app.runtime import get_runtime
from app.storage import ArtifactStoreUnavailableError

logger = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    """The process is up and serving."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers with its schema at head, Redis when configured
    answers, and the artifact store passes its probe."""
    runtime = get_runtime(request)
    checks: dict[str, str] = {}
    try:
        async with runtime.database.session(read_only=True) as session:
            await session.execute(sa.text("SELECT 1"))
        at_head = await migrations.is_at_head(runtime.database.engine)
        checks["database"] = "ok" if at_head else "schema is behind; run `modelreg migrate`"
    except Exception as error:
        logger.warning("database not ready", extra={"error": str(error)})
        checks["database"] = "unreachable"
    if runtime.redis is not None:
        try:
            await runtime.redis.ping()
            checks["redis"] = "ok"
        except Exception as error:
            logger.warning("redis not ready", extra={"error": str(error)})
            checks["redis"] = "unreachable"
    try:
        await runtime.artifacts.probe()
        checks["storage"] = "ok"
    except ArtifactStoreUnavailableError as error:
        # The cause (bucket, directory, credentials) goes to the log, not to anonymous callers.
        logger.warning("artifact storage not ready", extra={"error": error.message})
        checks["storage"] = (
            "unreachable" if error.transient else "misconfigured; see the server log"
        )
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
