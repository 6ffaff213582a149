"""The /graphql endpoint: reads the request as `app.http_bodies` reads every body,
authenticates the caller, then hands over to Strawberry.

A POST must be ``application/json`` (415 otherwise: a cross-site form cannot send it) and at
most 4 MiB, the size of the largest batch the candidate mutations take (413), arriving in
time (408); its JSON, and the ``variables`` of a
GET, nest at most 64 levels and hold no NUL or lone surrogate (400). A GET runs queries
only, never mutations (Strawberry's rule), and serves GraphiQL to a browser
(`app.graphql.ide`).

Refusals of the request itself, ours and Strawberry's, answer with their HTTP status and
``{"errors": [{"message", "extensions": {"code"}}]}``: PAYLOAD_TOO_LARGE,
REQUEST_TIMEOUT, UNSUPPORTED_MEDIA_TYPE, UNAUTHENTICATED, FORBIDDEN (a cookie-authenticated
POST without its CSRF token), METHOD_NOT_ALLOWED or BAD_REQUEST.

A websocket at the same path speaks graphql-transport-ws for subscriptions
(`app.graphql.subscriptions`, which also authenticates the connection). Browsers let any
page open a websocket with the user's cookies, so a handshake from another origin is
refused (403) unless that origin is one of MODELREG_CORS_ORIGINS and the handshake
carries no session cookie: such pages subscribe with a token only.
"""

from __future__ import annotations

from typing import Any, cast

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from app import http_bodies
from app.database_outage import CLIENT_MESSAGE
from app.errors import DomainError, ForbiddenError, UnauthenticatedError
from app.graphql.context import Context
from app.graphql.errors import SERVICE_UNAVAILABLE, answers_unavailable
from app.graphql.ide import graphiql_page
from app.graphql.schema import schema
from app.graphql.subscriptions import (
    MAX_SUBSCRIPTIONS_PER_CONNECTION,
    ConnectionContext,
    SubscriptionConnections,
    SubscriptionSocket,
    authenticate_connection,
)
from app.http_auth import SESSION_COOKIE, WWW_AUTHENTICATE, actor_from_request
from app.http_bodies import BATCH_BODY_LIMIT, RequestRefusedError
from app.runtime import get_runtime

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


def refusal(message: str, status: int, code: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
    extensions = {"code": code or _STATUS_CODES.get(status, "BAD_REQUEST")}
    return JSONResponse(
        {"errors": [{"message": message, "extensions": extensions}]},
        status_code=status,
        headers=headers,
    )


def unavailable_response() -> JSONResponse:
    """The 503 of a request that failed on an unreachable database before Strawberry ran."""
    return refusal(CLIENT_MESSAGE, 503, SERVICE_UNAVAILABLE)


class GraphQLEndpoint(GraphQL[Context, None]):
    websocket_adapter_class = SubscriptionSocket

    def __init__(self) -> None:
        super().__init__(
            schema,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        )
        self.subscription_connections = SubscriptionConnections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            async with self.subscription_connections.held(scope):
                await super().__call__(scope, receive, send)
            return
        try:
            response = await self._respond(Request(scope, receive))
        except HTTPException as error:
            response = refusal(error.reason, error.status_code)
        except RequestRefusedError as error:
            response = refusal(error.message, error.status, error.code.upper())
        except UnauthenticatedError as error:
            response = refusal(error.message, 401)
        except ForbiddenError as error:  # a cookie-authenticated write without its CSRF token
            response = refusal(error.message, 403, "FORBIDDEN")
        except DomainError as error:
            response = refusal(error.message, 400)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        if request.method == "POST":
            http_bodies.require_json(request)
            body = await http_bodies.read_body(request, limit=BATCH_BODY_LIMIT)
            # Strawberry reads the body itself: it gets the bytes already read.
            request = Request(request.scope, http_bodies.replaying(body, request.receive))
        actor = await actor_from_request(request, get_runtime(request).database)
        request.scope.setdefault("state", {})["actor"] = actor
        return await self.run(request)

    async def render_graphql_ide(self, request: Request) -> Response:
        # Our own GraphiQL build, not Strawberry's page, which loads it from a CDN.
        return graphiql_page()

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if answers_unavailable(response_data):
            # The database is unreachable: a status that clients and proxies retry.
            response.status_code = 503
        return response

    def decode_json(self, data: str | bytes) -> object:
        decoded = http_bodies.parse_json(data)
        # Strawberry reads fields of what it decodes: a bare null, number or string would
        # fail inside it.
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "The request's JSON must be an object")
        return decoded

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        # Asked for handshakes from another origin only (strawberry admits the rest).
        allowed = get_runtime(request).settings.cors_origins
        return origin in allowed and SESSION_COOKIE not in request.cookies

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        await authenticate_connection(context, self.subscription_connections)
        return await super().on_ws_connect(context)

    async def get_context(self, request: Request | Any, response: Response | Any) -> Context:
        if isinstance(request, WebSocket):
            # Authenticated by `on_ws_connect`, once the connection_init payload came.
            # Resolvers read of `request` only what a websocket has too (app, url, headers).
            return ConnectionContext(
                request=cast(Request, request), database=get_runtime(request).database, actor=None
            )
        return Context(
            request=request,
            database=get_runtime(request).database,
            actor=request.scope["state"]["actor"],
        )
