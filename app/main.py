"""The ASGI application: mounts the surfaces, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app import ops, rest, sign_in
from app.database_outage import DatabaseOutageMiddleware
from app.db import Database
from app.errors import NotFoundError
from app.events import EventHub
from app.frontend import STATIC_PATH, FrontendFiles, mlflow_landing_routes, ui_routes
from app.graphql.endpoint import GraphQLEndpoint
from app.graphql.endpoint import unavailable_response as graphql_unavailable
from app.metrics import install_metrics
from app.mlflow.routes import endpoint_not_found
from app.mlflow.routes import routes as mlflow_routes
from app.mlflow.routes import unavailable_response as mlflow_unavailable
from app.observability import RequestLogMiddleware
from app.outbox import DispatcherFactory
from app.rest import routes as rest_routes
from app.runtime import Runtime
from app.settings import Settings, load_settings
from app.storage import create_artifact_store


async def no_route(request: Request, error: Exception) -> Response:
    """A path no route matches, answered in the convention of the surface it lies under
    (path parameters never span a line break: such paths land here too)."""
    path = request.url.path
    if path.startswith(f"{rest.PREFIX}/"):
        return rest.error_response(NotFoundError(f"No API route {request.method} {path}"))
    if path.startswith(("/api/", "/ajax-api/", "/projects/")):
        return await endpoint_not_found(request)
    return PlainTextResponse("Not Found", status_code=404)


class GraphQLCorsMiddleware:
    """CORS for `/graphql` alone, for the origins of MODELREG_CORS_ORIGINS: their pages may
    call it with a token, never with cookies (no Access-Control-Allow-Credentials). Other
    origins and paths pass by untouched, so they get no CORS header at all."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/graphql"
            and Headers(scope=scope).get("origin") in self.origins
        ):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, dispatcher_factory: DispatcherFactory | None = None
) -> Starlette:
    """The app; `dispatcher_factory` builds the job dispatcher its lifespan runs (the
    workers' `create_dispatcher`, which `modelreg serve` passes). Without one the app
    can be inspected but not started: its committed jobs would reach no runner."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if dispatcher_factory is None:
            raise RuntimeError(
                "create_app needs a dispatcher_factory to start: without one, jobs reach "
                "no runner (`modelreg serve` passes workers.dispatch.create_dispatcher)"
            )
        async with contextlib.AsyncExitStack() as cleanup:
            database = Database(settings.resolved_database_url)
            cleanup.push_async_callback(database.dispose)
            redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
            if redis is not None:
                cleanup.push_async_callback(redis.aclose)
            events = EventHub(settings.redis_url)
            await events.start()
            cleanup.push_async_callback(events.close)
            database.outbox.connect_events(events)
            artifacts = create_artifact_store(settings)
            await artifacts.start()
            cleanup.push_async_callback(artifacts.close)
            dispatcher = await dispatcher_factory(settings, database, artifacts)
            cleanup.push_async_callback(dispatcher.close)
            await dispatcher.start()
            app.state.runtime = Runtime(
                settings=settings,
                database=database,
                redis=redis,
                artifacts=artifacts,
                events=events,
            )
            yield

    graphql = GraphQLEndpoint()
    app = Starlette(
        routes=[
            *ops.routes,
            Route("/graphql", graphql, methods=["GET", "POST"]),
            # Subscriptions (graphql-transport-ws).
            WebSocketRoute("/graphql", graphql),
            *sign_in.routes(),
            Mount(STATIC_PATH, FrontendFiles()),
            # Before the MLflow surface, whose routes cover prefixes under /api.
            *rest_routes(),
            # Where MLflow's printed links land: the UI, inside the MLflow surface's paths.
            *mlflow_landing_routes(),
            *mlflow_routes(),
            # Last: it matches the web UI's addresses only (`app.frontend`).
            *ui_routes(),
        ],
        middleware=[
            Middleware(RequestLogMiddleware),
            *(
                [Middleware(GraphQLCorsMiddleware, origins=settings.cors_origins)]
                if settings.cors_origins
                else []
            ),
            # A request that the database's absence failed answers 503 in its surface's
            # convention; the MLflow surface holds every path the others do not.
            Middleware(
                DatabaseOutageMiddleware,
                answers=[
                    ("/graphql", graphql_unavailable),
                    (rest.PREFIX, rest.unavailable_response),
                    ("/", mlflow_unavailable),
                ],
            ),
        ],
        exception_handlers={404: no_route},
        lifespan=lifespan,
    )
    install_metrics(app)
    return app
