"""A database that cannot be reached: which failures mean that, and the 503 that says so.

A request that fails because PostgreSQL is down, restarting or out of connections is
not the client's fault nor a bug: every surface answers it with HTTP 503 and a message
to retry, in its own convention (MLflow `TEMPORARILY_UNAVAILABLE`, which its client
retries; GraphQL `SERVICE_UNAVAILABLE`; the package API `service_unavailable`).

An outage is, anywhere in the exception's chain:
- `DatabaseUnavailableError`: the engine could not open a connection (refused, timed
  out, the server starting up or shutting down, too many clients); `app.db` raises it;
- a `DBAPIError` whose connection was invalidated: the server dropped the connection in
  the middle of a statement (a restart, a crash, a network cut);
- the pool's `TimeoutError`: no connection came free in time.

Anything else (SQLite's "database is locked", a constraint, a bug) is not an outage.
The engine's `pool_pre_ping` replaces dead pooled connections, so the first request
after the database comes back succeeds without a restart of the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# What clients read: the cause, without the host or the driver's text.
CLIENT_MESSAGE = "The database is temporarily unavailable; retry shortly"
# Seconds a client should wait before retrying, sent as Retry-After.
RETRY_AFTER_SECONDS = 2


class DatabaseUnavailableError(Exception):
    """No connection to the database could be opened; the message names the cause."""


def is_database_outage(error: BaseException) -> bool:
    """Whether `error` means the database is unreachable (see the module's description)."""
    for cause in _chain(error):
        if isinstance(cause, DatabaseUnavailableError | sa.exc.TimeoutError):
            return True
        if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
            return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# Builds a surface's 503 answer.
OutageAnswer = Callable[[], Response]


def with_retry_after(response: Response) -> Response:
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseOutageMiddleware:
    """Answers a request that failed on an unreachable database with the 503 of its
    surface: `answers` pairs path prefixes with the answer of the surface under them,
    the first matching prefix wins. Other exceptions pass through untouched, and so does
    an outage once the response has started (the connection then ends early)."""

    def __init__(self, app: ASGIApp, *, answers: Sequence[tuple[str, OutageAnswer]]) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as error:
            if response_started or not is_database_outage(error):
                raise
            logger.warning(
                "database unavailable: %s %s answered 503",
                scope["method"],
                scope["path"],
                extra={"error": f"{type(error).__name__}: {error}"},
            )
            response = with_retry_after(self._answer_for(scope["path"])())
            await response(scope, receive, send)

    def _answer_for(self, path: str) -> OutageAnswer:
        return next(answer for prefix, answer in self.answers if path.startswith(prefix))
