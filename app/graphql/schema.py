"""The GraphQL schema served at /graphql."""

from __future__ import annotations

import strawberry

import app


def _server_version() -> str:
    return app.__version__


@strawberry.type
class Query:
    version: str = strawberry.field(
        resolver=_server_version, description="The version of the modelreg server."
    )


schema = strawberry.Schema(query=Query)
