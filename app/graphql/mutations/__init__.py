"""The root Mutation type: one field per mutation, resolvers in the modules beside."""

from __future__ import annotations

import strawberry

from app.graphql.mutations import projects, tokens, users


@strawberry.type
class Mutation:
    user_create = strawberry.mutation(resolver=users.user_create)
    project_create = strawberry.mutation(resolver=projects.project_create)
    project_update = strawberry.mutation(resolver=projects.project_update)
    member_set = strawberry.mutation(resolver=projects.member_set)
    member_remove = strawberry.mutation(resolver=projects.member_remove)
    token_create = strawberry.mutation(resolver=tokens.token_create)
    token_revoke = strawberry.mutation(resolver=tokens.token_revoke)
