"""The root Subscription type, served over websockets at /graphql (graphql-transport-ws).

- `jobUpdated(id)`: the job as it is now, then again after each change of its status or
  progress; the subscription completes once the job succeeded or failed for good.
- `candidateUpdated(id)`: first the candidate as it is now (status, end time and the
  latest value of each metric, so a client that subscribes after a log misses nothing),
  then each change: its status and end time, and the metric points just logged (at most
  1,000 per message; a larger batch comes as several), through MLflow or GraphQL, by any
  API process.

A subscriber must be able to read the object when it subscribes, the rule of `node(id)`:
a missing and an unreadable object alike end the subscription with a NOT_FOUND error.
Access is checked again before each update is sent: credentials that no longer hold (a
revoked or expired token, a signed-out session, a blocked user) end the subscription
with an UNAUTHENTICATED error, and an object the caller may no longer read (removed from
the project, the project made private) with NOT_FOUND.
Updates are delivered at least once: one committed while the subscription starts may
come both in the first message and as an update. A client that reads too slowly
(`app.events.QUEUE_LIMIT` messages behind) gets an error and subscribes again.

Who the connection is: a token in the `connection_init` payload, as
``{"Authorization": "Bearer <token>"}`` or ``{"token": "<token>"}``, else the handshake's
own credentials (an Authorization header, or the `modelreg_session` cookie of a browser),
else anonymous. Invalid credentials close the connection (4403). A page of another origin
never subscribes with the cookie (see `GraphQLEndpoint.is_websocket_origin_allowed`).

An API process holds at most MODELREG_SUBSCRIPTION_CONNECTIONS open connections, and at
most MODELREG_SUBSCRIPTION_CONNECTIONS_PER_CALLER for one caller (a user, whichever
token or session it uses; an anonymous client by its address): a connection beyond
either is closed with 4429 once its `connection_init` told who it is.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.types import Scope
from strawberry import relay
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult, StreamExecutionResult

from app import models
from app.errors import DomainError, NotFoundError, UnauthenticatedError
from app.events import (
    EventHub,
    EventsUnavailableError,
    FellBehindError,
    candidate_channel,
    job_channel,
)
from app.graphql.context import Context, Info
from app.graphql.errors import SERVICE_UNAVAILABLE, present
from app.graphql.loaders import Loaders
from app.graphql.nodes import row_id
from app.graphql.types.candidates import Candidate, Metric, _time
from app.graphql.types.jobs import Job
from app.http_auth import actor_from_request
from app.runtime import get_runtime
from app.services import auth, candidates, jobs
from app.services.candidates import CandidateChange

# Operations one connection may run at once (strawberry refuses more, closing 4400).
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100

FINAL_JOB_STATUSES = (models.JobStatus.SUCCEEDED, models.JobStatus.FAILED)


@dataclass
class ConnectionContext(Context):
    """The context of a websocket connection: strawberry puts the `connection_init`
    payload in `connection_params` before `sign_in` runs."""

    connection_params: dict[str, Any] = field(default_factory=dict)

    async def sign_in(self) -> None:
        """Authenticate the connection (UnauthenticatedError when its credentials fail)."""
        token = _token(self.connection_params)
        if token is not None:
            self.actor = await auth.authenticate(self.database, token)
        else:
            self.actor = await actor_from_request(self.request, self.database)
        self.loaders = Loaders(self.database, self.actor)

    async def sign_in_again(self) -> None:
        """Authenticate the connection with its credentials as they stand now: an
        UnauthenticatedError once they no longer hold, a session signed out included."""
        signed_in = self.actor is not None
        await self.sign_in()
        if signed_in and self.actor is None:
            raise UnauthenticatedError("the session has ended; sign in again")


# The close code and reason of a connection refused for being one too many.
TOO_MANY_CONNECTIONS = (4429, "Too many subscription connections")
# Where a connection's websocket scope keeps what `SubscriptionConnections` knows of it.
_CALLER_KEY = "subscription_caller"
_REFUSAL_KEY = "subscription_refusal"


class SubscriptionConnections:
    """The subscription connections this process holds open, counted by caller."""

    def __init__(self) -> None:
        self._by_caller: collections.Counter[str] = collections.Counter()

    @property
    def open(self) -> int:
        return self._by_caller.total()

    def admit(self, scope: Scope, caller: str, *, in_all: int, per_caller: int) -> bool:
        """Count the connection of `scope` as the caller's, while both limits allow it."""
        if self.open >= in_all or self._by_caller[caller] >= per_caller:
            scope[_REFUSAL_KEY] = TOO_MANY_CONNECTIONS
            return False
        self._by_caller[caller] += 1
        scope[_CALLER_KEY] = caller
        return True

    @contextlib.asynccontextmanager
    async def held(self, scope: Scope) -> AsyncIterator[None]:
        """Serve the connection of `scope`; it stops counting once the block ends."""
        try:
            yield
        finally:
            caller = scope.pop(_CALLER_KEY, None)
            if caller is not None:
                self._by_caller[caller] -= 1
                if self._by_caller[caller] <= 0:
                    del self._by_caller[caller]


class SubscriptionSocket(ASGIWebSocketAdapter):
    """Strawberry's websocket, which closes a connection that `authenticate_connection`
    refused for being one too many with 4429 (Strawberry knows one refusal: 4403)."""

    async def close(self, code: int, reason: str) -> None:
        refusal = self.ws.scope.pop(_REFUSAL_KEY, None)
        if refusal is not None:
            code, reason = refusal
        await super().close(code=code, reason=reason)


def _caller(context: ConnectionContext) -> str:
    """Whom a connection counts against: its user, else its client's address."""
    if context.actor is not None and context.actor.user_id is not None:
        return f"user:{context.actor.user_id}"
    client = context.request.client
    return f"address:{client.host if client is not None else ''}"


async def authenticate_connection(context: Context, connections: SubscriptionConnections) -> None:
    """What the endpoint's `on_ws_connect` runs: refuses a connection whose credentials
    are not valid (4403), or that is one too many for its caller or the process (4429)."""
    if not isinstance(context, ConnectionContext):
        raise ConnectionRejectionError()
    try:
        await context.sign_in()
    except DomainError:
        raise ConnectionRejectionError() from None
    settings = get_runtime(context.request).settings
    if not connections.admit(
        context.request.scope,
        _caller(context),
        in_all=settings.subscription_connections,
        per_caller=settings.subscription_connections_per_caller,
    ):
        raise ConnectionRejectionError()


def _token(params: dict[str, Any]) -> str | None:
    """The token of a `connection_init` payload, None when it holds none."""
    header = params.get("Authorization", params.get("authorization"))
    if header is not None:
        scheme, _, token = str(header).strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("Authorization must be 'Bearer <token>'")
        return token.strip()
    value = params.get("token")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UnauthenticatedError("token must be a non-empty string")
    return value


@strawberry.type(description="A candidate's status and end time, and the metrics just logged.")
class CandidateUpdate:
    candidate_id: relay.GlobalID
    status: models.CandidateStatus
    end_time: dt.datetime | None
    metrics: list[Metric] = strawberry.field(
        description="The values logged by this change; in the first message, the latest "
        "value of each metric."
    )

    @classmethod
    def of(cls, candidate_id: int, change: CandidateChange) -> CandidateUpdate:
        return cls(
            candidate_id=relay.GlobalID("Candidate", str(candidate_id)),
            status=change.status,
            end_time=_time(change.end_time),
            metrics=[Metric.from_point(point) for point in change.metrics],
        )


async def _readable(info: Info, node_type: type[Job] | type[Candidate], id: relay.GlobalID) -> int:
    """The row id of the object `id` names, once the caller may read it (NotFoundError
    otherwise, whether it is missing or hidden)."""
    number = row_id(id, node_type.__name__)
    # A connection lives long: its loaders would keep what they read for its whole life.
    info.context.loaders = Loaders(info.context.database, info.context.actor)
    [found] = await node_type.resolve_nodes(info=info, node_ids=[str(number)])
    if found is None:
        raise NotFoundError(f"{node_type.__name__} '{id}' does not exist", field="id")
    return number


async def _still_readable(
    info: Info, node_type: type[Job] | type[Candidate], id: relay.GlobalID
) -> None:
    """Before an update goes out: the connection's credentials still hold
    (UnauthenticatedError otherwise) and its caller may still read the object
    (NotFoundError otherwise)."""
    context = info.context
    if isinstance(context, ConnectionContext):
        await context.sign_in_again()
    await _readable(info, node_type, id)


def _hub(info: Info) -> EventHub:
    return get_runtime(info.context.request).events


@contextlib.contextmanager
def _delivery_errors() -> Iterator[None]:
    """A subscriber that fell behind, or events that Redis does not carry, end the
    subscription with an error the client can act on (subscribe again)."""
    try:
        yield
    except FellBehindError as error:
        raise GraphQLError(str(error), extensions={"code": "FELL_BEHIND"}) from None
    except EventsUnavailableError as error:
        raise GraphQLError(str(error), extensions={"code": SERVICE_UNAVAILABLE}) from None


async def job_updated(info: Info, id: relay.GlobalID) -> AsyncGenerator[Job, None]:
    job_id = await _readable(info, Job, id)
    with _delivery_errors():
        async with _hub(info).subscribe(job_channel(job_id)) as updates:
            async with info.context.database.session(read_only=True) as session:
                row = await jobs.get_job(session, job_id=job_id)
            yield Job.from_row(row)
            while row.status not in FINAL_JOB_STATUSES:
                message = await anext(updates)
                await _still_readable(info, Job, id)
                row = jobs.job_from_message(message)
                yield Job.from_row(row)


async def candidate_updated(
    info: Info, id: relay.GlobalID
) -> AsyncGenerator[CandidateUpdate, None]:
    candidate_id = await _readable(info, Candidate, id)
    with _delivery_errors():
        async with _hub(info).subscribe(candidate_channel(candidate_id)) as updates:
            async with info.context.database.session(read_only=True) as session:
                row = await session.get_one(models.Candidate, candidate_id)
                current = await candidates.current_change(session, candidate=row)
            yield CandidateUpdate.of(candidate_id, current)
            async for message in updates:
                await _still_readable(info, Candidate, id)
                yield CandidateUpdate.of(candidate_id, CandidateChange.from_message(message))


class StreamedErrorPresentation(SchemaExtension):
    """Presents the errors of each result a websocket operation sends, as
    `ErrorPresentation` does for the one result of a request."""

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = [present(error) for error in result.errors]
        yield None


@strawberry.type
class Subscription:
    job_updated = strawberry.subscription(
        resolver=job_updated,
        description="A job now, then after each change; completes once it finished.",
    )
    candidate_updated = strawberry.subscription(
        resolver=candidate_updated,
        description="A candidate now (status, end time, latest metrics), then each change.",
    )
