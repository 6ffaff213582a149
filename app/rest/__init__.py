"""The REST API (`/api/v1`): for CI, curl and other tools.

Errors answer as JSON ``{"message": <text>, "error": <code>}`` with the status of the
error's kind (see `ERROR_STATUS`); a 401 also carries ``WWW-Authenticate``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from app import database_outage
from app.errors import (
    AlreadyExistsError,
    DomainError,
    ForbiddenError,
    InvalidValueError,
    NotFoundError,
    UnauthenticatedError,
)
from app.http_auth import WWW_AUTHENTICATE

PREFIX = "/api/v1"

ERROR_STATUS: list[tuple[type[DomainError], int]] = [
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (InvalidValueError, 400),
]


class RestError(DomainError):
    """An answer of this API that no domain error describes: its own status and code."""

    def __init__(self, message: str, *, status: int, code: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers


def error_response(error: DomainError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, RestError):
        status, headers = error.status, dict(error.headers)
    else:
        status = next((code for kind, code in ERROR_STATUS if isinstance(error, kind)), 400)
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return JSONResponse(
        {"message": error.message, "error": error.code}, status_code=status, headers=headers
    )


def unavailable_response() -> Response:
    """The database is unreachable: 503 ``service_unavailable``."""
    return error_response(
        RestError(database_outage.CLIENT_MESSAGE, status=503, code="service_unavailable")
    )


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """The handler, answering domain errors in this API's convention."""

    async def respond(request: Request) -> Response:
        try:
            return await handler(request)
        except DomainError as error:
            return error_response(error)

    return respond


def routes() -> list[BaseRoute]:
    from app.rest import packages

    return packages.routes()
