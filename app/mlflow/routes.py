"""The MLflow REST surface: MLflow's paths under the root (the `default` project, or the
project MLflow's workspace header names: `app.mlflow.call`) and under
/projects/<project>/mlflow, each under /api and /ajax-api, answering in MLflow's JSON and
error conventions. MLflow's workspaces API manages the projects (`app.mlflow.workspaces`).

JSON bodies are at most 1 MiB (MLflow documents 1 MB), 4 MiB for the batch endpoints
(log-batch, log-inputs), whose largest valid batch is ~1.9 MB of text. Refused bodies answer
413 (too large), 408 (too slow) and 415 (not ``application/json``) with MLflow's error JSON
(`app.http_bodies`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

import app
from app import database_outage, errors, http_bodies
from app.http_auth import WWW_AUTHENTICATE, actor_from_request
from app.http_bodies import BATCH_BODY_LIMIT, JSON_BODY_LIMIT
from app.mlflow import (
    artifacts,
    experiments,
    logged_models,
    registry,
    runs,
    webhooks,
    workspaces,
)
from app.mlflow.call import Call, Endpoint, Handler
from app.runtime import get_runtime
from app.services.projects import ProjectNotEmptyError

logger = logging.getLogger(__name__)

# MLflow's error codes and the HTTP statuses its client expects with them.
ERROR_CODES: dict[type[errors.DomainError], tuple[str, int]] = {
    # Before InvalidValueError, which it refines. MLflow answers 500; a refusal is no fault.
    ProjectNotEmptyError: ("INVALID_STATE", 409),
    workspaces.UnsupportedModeError: ("NOT_IMPLEMENTED", 501),
    errors.NotFoundError: ("RESOURCE_DOES_NOT_EXIST", 404),
    errors.AlreadyExistsError: ("RESOURCE_ALREADY_EXISTS", 400),
    errors.InvalidValueError: ("INVALID_PARAMETER_VALUE", 400),
    errors.ForbiddenError: ("PERMISSION_DENIED", 403),
    errors.UnauthenticatedError: ("UNAUTHENTICATED", 401),
    # As MLflow refuses an oversized batch or a body that is not JSON, with the HTTP status.
    http_bodies.BodyTooLargeError: ("INVALID_PARAMETER_VALUE", 413),
    http_bodies.UnsupportedMediaTypeError: ("INVALID_PARAMETER_VALUE", 415),
    http_bodies.BodyTimeoutError: ("BAD_REQUEST", 408),
    http_bodies.IncompleteBodyError: ("BAD_REQUEST", 400),
    http_bodies.StorageUnavailableError: ("TEMPORARILY_UNAVAILABLE", 503),
}

BATCH_PATHS = {"/mlflow/runs/log-batch", "/mlflow/runs/log-inputs"}

# Every handler module lists its (method, path under /api/2.0 and /ajax-api/2.0, handler).
ENDPOINTS: list[Endpoint] = [
    *experiments.ENDPOINTS,
    *runs.ENDPOINTS,
    *registry.ENDPOINTS,
    *artifacts.ENDPOINTS,
    *logged_models.ENDPOINTS,
    *webhooks.ENDPOINTS,
]


def error_response(code: str, message: str, status: int) -> JSONResponse:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
    return JSONResponse({"error_code": code, "message": message}, status, headers=headers)


def unavailable_response() -> JSONResponse:
    """The database is unreachable: MLflow's client retries a 503."""
    return error_response("TEMPORARILY_UNAVAILABLE", database_outage.CLIENT_MESSAGE, 503)


def domain_error_response(error: errors.DomainError) -> JSONResponse:
    for error_type, (code, status) in ERROR_CODES.items():
        if isinstance(error, error_type):
            return error_response(code, error.message, status)
    return error_response("INVALID_PARAMETER_VALUE", error.message, 400)


class MlflowJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def endpoint(
    handler: Handler, *, body_limit: int, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    async def respond(request: Request) -> Response:
        database = get_runtime(request).database
        try:
            # The body is bounded and read before any work is done for the caller.
            params = await Call.read_params(request, body_limit=body_limit)
            actor = await actor_from_request(request, database)
            call = Call(request=request, database=database, actor=actor, params=params)
            body = await handler(call)
            if status == 204:
                return Response(status_code=204)
            return MlflowJSONResponse(body, status)
        except errors.DomainError as error:
            return domain_error_response(error)

    return respond


async def endpoint_not_found(request: Request) -> Response:
    return error_response(
        "ENDPOINT_NOT_FOUND",
        f"No API endpoint {request.method} {request.url.path}",
        404,
    )


async def health(request: Request) -> Response:
    return PlainTextResponse("OK")


# The MLflow release whose REST API this surface implements: MLflow clients read it from
# /version to decide which calls a server supports (e.g. log_spans needs 3.4 or later).
MLFLOW_VERSION = "3.17.2"
# modelreg's own version travels beside it, where MLflow clients do not look.
MODELREG_VERSION_HEADER = "X-Modelreg-Version"


async def version(request: Request) -> Response:
    return PlainTextResponse(MLFLOW_VERSION, headers={MODELREG_VERSION_HEADER: app.__version__})


async def server_info(request: Request) -> Response:
    """MLflow 3's capability document, the keys of `build_server_info_payload` in
    `mlflow/server/handlers.py`, each saying what this server does."""
    return JSONResponse(
        {
            "store_type": "SqlStore",
            # Workspaces are projects (`app.mlflow.workspaces`).
            "workspaces_enabled": True,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            # Artifacts go through the proxy: no presigned URLs are handed out.
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
            "mlflow_version": MLFLOW_VERSION,
            "modelreg_version": app.__version__,
        },
        headers={MODELREG_VERSION_HEADER: app.__version__},
    )


def _surface_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route(
            f"{prefix}/2.0{path}",
            endpoint(
                handler,
                body_limit=BATCH_BODY_LIMIT if path in BATCH_PATHS else JSON_BODY_LIMIT,
            ),
            methods=[method],
        )
        for method, path, handler in ENDPOINTS
        for prefix in ("/api", "/ajax-api")
    ]
    routes += [
        Route(f"{prefix}/3.0/mlflow/server-info", server_info, methods=["GET"])
        for prefix in ("/api", "/ajax-api")
    ]
    routes += [
        Route(
            f"{prefix}/3.0/mlflow{path}",
            endpoint(handler, body_limit=JSON_BODY_LIMIT, status=status),
            methods=[method],
        )
        for method, path, handler, status in workspaces.ENDPOINTS
        for prefix in ("/api", "/ajax-api")
    ]
    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
    ]
    # The artifact proxy streams bodies under a path parameter: routes of its own.
    routes += artifacts.proxy_routes(domain_error_response)
    # Anything else under MLflow's API prefixes is an unknown endpoint, in MLflow's JSON.
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes += [
        Route(f"{prefix}/{{rest:path}}", endpoint_not_found, methods=methods)
        for prefix in ("/api/2.0", "/api/3.0", "/ajax-api/2.0", "/ajax-api/3.0")
    ]
    return routes


def routes() -> list[BaseRoute]:
    """The MLflow surface for the default project at the root and for every project."""
    surface = _surface_routes()
    return [*surface, Mount("/projects/{project}/mlflow", routes=surface)]
