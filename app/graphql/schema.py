"""The GraphQL schema served at /graphql."""

from __future__ import annotations

import strawberry

from app.graphql.errors import EXCEPTION_HANDLERS
from app.graphql.mutations import Mutation
from app.graphql.queries import Query

schema = strawberry.Schema(query=Query, mutation=Mutation, exception_handlers=EXCEPTION_HANDLERS)
