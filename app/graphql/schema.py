"""The GraphQL schema served at /graphql."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from app.graphql.errors import EXCEPTION_HANDLERS, ErrorPresentation
from app.graphql.limits import QueryLimits
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.types.common import SCALARS

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    exception_handlers=EXCEPTION_HANDLERS,
    # ErrorPresentation first: it rewrites the errors after the others are done.
    extensions=[ErrorPresentation, QueryLimits],
    config=StrawberryConfig(scalar_map=SCALARS),
)
