"""The /graphql endpoint: authenticates the caller, then hands over to Strawberry."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL

from app.errors import UnauthenticatedError
from app.graphql.context import Context
from app.graphql.schema import schema
from app.http_auth import WWW_AUTHENTICATE, actor_from_request
from app.runtime import get_runtime


class GraphQLEndpoint(GraphQL[Context, None]):
    def __init__(self) -> None:
        super().__init__(schema)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            try:
                actor = await actor_from_request(request, get_runtime(request).database)
            except UnauthenticatedError as error:
                response = JSONResponse(
                    {
                        "errors": [
                            {"message": error.message, "extensions": {"code": "UNAUTHENTICATED"}}
                        ]
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": WWW_AUTHENTICATE},
                )
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["actor"] = actor
        await super().__call__(scope, receive, send)

    async def get_context(self, request: Request | Any, response: Response | Any) -> Context:
        return Context(
            request=request,
            database=get_runtime(request).database,
            actor=request.scope["state"]["actor"],
        )
