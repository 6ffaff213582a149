"""The root Mutation type: one field per mutation, resolvers in the modules beside."""

from __future__ import annotations

import strawberry

from app.graphql.mutations import (
    candidates,
    importing,
    metadata,
    models,
    packages,
    projects,
    tokens,
    users,
    versions,
    webhooks,
)


@strawberry.type
class Mutation:
    user_create = strawberry.mutation(resolver=users.user_create)
    project_create = strawberry.mutation(resolver=projects.project_create)
    project_update = strawberry.mutation(resolver=projects.project_update)
    project_delete = strawberry.mutation(resolver=projects.project_delete)
    project_import_mlflow = strawberry.mutation(resolver=importing.project_import_mlflow)
    member_set = strawberry.mutation(resolver=projects.member_set)
    member_remove = strawberry.mutation(resolver=projects.member_remove)
    token_create = strawberry.mutation(resolver=tokens.token_create)
    token_revoke = strawberry.mutation(resolver=tokens.token_revoke)
    model_create = strawberry.mutation(resolver=models.model_create)
    model_update = strawberry.mutation(resolver=models.model_update)
    model_delete = strawberry.mutation(resolver=models.model_delete)
    model_version_create = strawberry.mutation(resolver=versions.model_version_create)
    model_version_update = strawberry.mutation(resolver=versions.model_version_update)
    model_version_delete = strawberry.mutation(resolver=versions.model_version_delete)
    alias_set = strawberry.mutation(resolver=versions.alias_set)
    alias_delete = strawberry.mutation(resolver=versions.alias_delete)
    candidate_create = strawberry.mutation(resolver=candidates.candidate_create)
    candidate_update = strawberry.mutation(resolver=candidates.candidate_update)
    candidate_delete = strawberry.mutation(resolver=candidates.candidate_delete)
    candidate_log_metrics = strawberry.mutation(resolver=candidates.candidate_log_metrics)
    package_types_migrate = strawberry.mutation(resolver=packages.package_types_migrate)
    metadata_delete = strawberry.mutation(resolver=metadata.metadata_delete)
    webhook_create = strawberry.mutation(resolver=webhooks.webhook_create)
    webhook_update = strawberry.mutation(resolver=webhooks.webhook_update)
    webhook_delete = strawberry.mutation(resolver=webhooks.webhook_delete)
    webhook_test = strawberry.mutation(resolver=webhooks.webhook_test)
    webhook_delivery_redeliver = strawberry.mutation(resolver=webhooks.webhook_delivery_redeliver)
