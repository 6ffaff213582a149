"""The GraphQL schema served at /graphql."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.graphql.errors import EXCEPTION_HANDLERS, ErrorPresentation, log
from app.graphql.limits import QueryLimits
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.subscriptions import StreamedErrorPresentation, Subscription
from app.graphql.types.common import SCALARS


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            log(error)


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    exception_handlers=EXCEPTION_HANDLERS,
    # ErrorPresentation first: it rewrites the errors after the others are done.
    extensions=[ErrorPresentation, StreamedErrorPresentation, QueryLimits],
    config=StrawberryConfig(scalar_map=SCALARS),
)
