"""Prometheus metrics: the `/metrics` route, the request middleware, and job durations.

`/metrics` answers Prometheus' text format (prometheus-client writes it). Each app has a
registry of its own, so two apps in one process never share or duplicate a series.

HTTP, observed by `RequestMetricsMiddleware` for every request:
- `modelreg_http_requests_total{method,route,status}` and
  `modelreg_http_request_duration_seconds{method,route,status}` (a histogram, until the
  last body byte is sent). `route` is the matched route's TEMPLATE, never the raw path
  (`/api/2.0/mlflow/runs/get`, `/projects/{project}/mlflow/api/2.0/mlflow/runs/get`,
  `/graphql`, `/api/v1/projects/{project}/packages/...`); a path no route matches is
  `<unmatched>`, an unknown method `OTHER`, so label values stay bounded.

Read at scrape time, answering even when the database is down:
- `modelreg_database_up`: 1 when the job query below answered within its time bound.
- `modelreg_jobs{kind,status}`: rows of the jobs table (every known kind and status,
  zeros included), from one grouped query.
- `modelreg_jobs_oldest_due_age_seconds`: how long the job waiting longest for a runner
  has been due (0 when none waits).
- `modelreg_database_pool_{size,checked_out,checked_in,overflow}`: the engine's pool.

Observed where jobs run (`workers.runner`):
- `modelreg_job_duration_seconds{kind}`: from claim to recorded outcome. In embedded mode
  the API runs jobs and shows it here; arq workers are other processes, and `modelreg
  worker` serves it on `MODELREG_WORKER_METRICS_PORT`.

With `MODELREG_METRICS_TOKEN` set, both answer only `Authorization: Bearer <token>`;
otherwise they are open, like `mlflow server --expose-prometheus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy.pool import QueuePool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import Database, utcnow
from app.models import JobStatus
from app.runtime import get_runtime
from app.services import jobs
from app.settings import Settings

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

UNAUTHORIZED_MESSAGE = "metrics need Authorization: Bearer <MODELREG_METRICS_TOKEN>"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="modelreg metrics"'}

# A scrape never waits longer than this for the database.
SCRAPE_DATABASE_TIMEOUT_SECONDS = 2.0

_JOB_DURATION_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, float("inf"))

# Observed by whichever process runs a job; each app registry and the worker's include it.
JOB_DURATION = Histogram(
    "modelreg_job_duration_seconds",
    "Time a job ran, from its claim to its recorded outcome.",
    ["kind"],
    registry=None,
    buckets=_JOB_DURATION_BUCKETS,
)


@contextlib.contextmanager
def timing_job(kind: str) -> Iterator[None]:
    """Observe the duration of a job run that ends (with any outcome) in the block;
    a run cut short by its runner's shutdown is not a duration."""
    started = time.perf_counter()
    yield
    JOB_DURATION.labels(kind=kind).observe(time.perf_counter() - started)


def bearer_token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header is `Bearer <token>`, compared in constant time."""
    scheme, _, presented = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


# --- the route template of a request -------------------------------------------------

# (id of a matched route, whether it was reached through a Mount) -> its template.
RouteTemplates = dict[tuple[int, bool], str]


def route_templates(routes: Sequence[BaseRoute]) -> RouteTemplates:
    """The template of every route, at the top level and under mounts. The MLflow
    surface's route objects serve both at the root and under its mount, told apart by
    whether a Mount changed the request's root path."""
    templates: RouteTemplates = {}

    def add(routes: Sequence[BaseRoute], prefix: str, mounted: bool) -> None:
        for route in routes:
            if isinstance(route, Mount):
                add(route.routes, prefix + route.path, True)
            elif isinstance(route, Route):
                key, template = (id(route), mounted), prefix + route.path
                if templates.setdefault(key, template) != template:
                    raise ValueError(
                        f"route {template} is also mounted as {templates[key]}; "
                        "metrics label a route object under one mount only"
                    )

    add(routes, "", False)
    return templates


class HttpMetrics:
    """The request counter and latency histogram of one app."""

    def __init__(self, registry: CollectorRegistry, templates: RouteTemplates) -> None:
        self.templates = templates
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "modelreg_http_requests", "HTTP requests answered.", labels, registry=registry
        )
        self.duration = Histogram(
            "modelreg_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte.",
            labels,
            registry=registry,
        )

    def observe(self, scope: Scope, mounted: bool, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = UNMATCHED_ROUTE if route is None else self.templates.get((id(route), mounted))
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        labels = (method, template or UNMATCHED_ROUTE, str(status))
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)


class RequestMetricsMiddleware:
    """Counts and times each HTTP request under its route template. Starlette's router
    leaves the matched route in `scope["route"]`, read once the response is sent."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        started = time.perf_counter()
        # Unchanged only when the app raised before answering; the 500 is sent outside.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            mounted = scope.get("root_path", "") != root_path
            self.metrics.observe(scope, mounted, status, time.perf_counter() - started)


# --- what a scrape reads --------------------------------------------------------------


class _ScrapedFamilies:
    """The metric families read for one scrape, as a collector of a throwaway registry."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def pool_families(database: Database) -> list[Metric]:
    """Connections of the engine's pool (PostgreSQL's and SQLite's are both queue pools)."""
    pool = database.engine.pool
    if not isinstance(pool, QueuePool):
        return []
    return [
        _gauge("modelreg_database_pool_size", "Connections the pool keeps open.", pool.size()),
        _gauge(
            "modelreg_database_pool_checked_out",
            "Connections in use by requests and jobs.",
            pool.checkedout(),
        ),
        _gauge(
            "modelreg_database_pool_checked_in",
            "Open connections idle in the pool.",
            pool.checkedin(),
        ),
        _gauge(
            "modelreg_database_pool_overflow",
            "Connections open beyond the pool size.",
            # Negative while the pool has not opened its `size` connections yet.
            max(pool.overflow(), 0),
        ),
    ]


async def job_families(database: Database) -> list[Metric]:
    """The job gauges and `modelreg_database_up`; only the latter (as 0) when the
    database does not answer within SCRAPE_DATABASE_TIMEOUT_SECONDS."""
    try:
        async with asyncio.timeout(SCRAPE_DATABASE_TIMEOUT_SECONDS):
            async with database.session(read_only=True) as session:
                statistics = await jobs.job_statistics(session)
    except Exception as error:
        logger.warning("metrics: the jobs table could not be read (%s)", type(error).__name__)
        return [_gauge("modelreg_database_up", "Whether the database answered the scrape.", 0)]
    counts = GaugeMetricFamily(
        "modelreg_jobs", "Jobs in the jobs table by kind and status.", labels=["kind", "status"]
    )
    kinds = sorted(jobs.JOB_KINDS | {kind for kind, _status in statistics.counts})
    for kind in kinds:
        for status in JobStatus:
            counts.add_metric([kind, status.value], statistics.counts.get((kind, status), 0))
    waited = (
        (utcnow() - statistics.oldest_due_since).total_seconds()
        if statistics.oldest_due_since is not None
        else 0.0
    )
    return [
        _gauge("modelreg_database_up", "Whether the database answered the scrape.", 1),
        counts,
        _gauge(
            "modelreg_jobs_oldest_due_age_seconds",
            "Seconds the job waiting longest for a runner has been due (0 when none waits).",
            max(waited, 0.0),
        ),
    ]


class AppMetrics:
    """The metrics of one app: its own registry, and the `/metrics` endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JOB_DURATION)

    async def endpoint(self, request: Request) -> Response:
        runtime = get_runtime(request)
        token = runtime.settings.metrics_token
        if token is not None and not bearer_token_matches(
            request.headers.get("authorization"), token
        ):
            return PlainTextResponse(UNAUTHORIZED_MESSAGE, 401, headers=UNAUTHORIZED_HEADERS)
        scraped = CollectorRegistry()
        scraped.register(
            _ScrapedFamilies(
                [*pool_families(runtime.database), *await job_families(runtime.database)]
            )
        )
        body = generate_latest(self.registry) + generate_latest(scraped)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)


def install_metrics(app: Starlette) -> None:
    """Serve `/metrics` and count every request of `app` (as its outermost middleware)."""
    metrics = AppMetrics()
    app.router.routes.insert(0, Route("/metrics", metrics.endpoint, methods=["GET"]))
    http = HttpMetrics(metrics.registry, route_templates(app.routes))
    app.add_middleware(RequestMetricsMiddleware, metrics=http)


# --- the worker's metrics port ----------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _token_protected(app: WSGIApp, token: str | None) -> WSGIApp:
    def protected(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token is not None and not bearer_token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            headers = [("Content-Type", "text/plain; charset=utf-8"), *UNAUTHORIZED_HEADERS.items()]
            start_response("401 Unauthorized", headers)
            return [UNAUTHORIZED_MESSAGE.encode()]
        return app(environ, start_response)

    return protected


def serve_worker_metrics(settings: Settings) -> ThreadingWSGIServer | None:
    """Serve the job durations of this process on MODELREG_WORKER_METRICS_PORT, from a
    daemon thread; None when no port is set."""
    if settings.worker_metrics_port is None:
        return None
    registry = CollectorRegistry()
    registry.register(JOB_DURATION)
    server = make_server(
        settings.worker_metrics_host,
        settings.worker_metrics_port,
        _token_protected(make_wsgi_app(registry), settings.metrics_token),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
