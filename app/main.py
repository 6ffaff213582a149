"""The ASGI application: mounts the surfaces, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from app import ops
from app.db import Database
from app.graphql.endpoint import GraphQLEndpoint
from app.mlflow.routes import routes as mlflow_routes
from app.observability import RequestLogMiddleware
from app.rest import routes as rest_routes
from app.runtime import Runtime
from app.settings import Settings, load_settings
from app.storage import create_artifact_store
from workers.dispatch import create_dispatcher


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as cleanup:
            database = Database(settings.resolved_database_url)
            cleanup.push_async_callback(database.dispose)
            redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
            if redis is not None:
                cleanup.push_async_callback(redis.aclose)
            artifacts = create_artifact_store(settings)
            await artifacts.start()
            cleanup.push_async_callback(artifacts.close)
            dispatcher = await create_dispatcher(settings, database, artifacts)
            cleanup.push_async_callback(dispatcher.close)
            await dispatcher.start()
            app.state.runtime = Runtime(
                settings=settings, database=database, redis=redis, artifacts=artifacts
            )
            yield

    return Starlette(
        routes=[
            *ops.routes,
            Route("/graphql", GraphQLEndpoint(), methods=["GET", "POST"]),
            # Before the MLflow surface, whose routes cover prefixes under /api.
            *rest_routes(),
            *mlflow_routes(),
        ],
        middleware=[Middleware(RequestLogMiddleware)],
        lifespan=lifespan,
    )
