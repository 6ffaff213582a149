"""Users and their access tokens.

Whoever may see a user (a member of a public project, an author) sees their username and
name, as GitLab shows them; whether they are an administrator is shown only to
administrators and to the user themselves. A user is a Node: its global id resolves through
`node(id)` for any signed-in caller (GitLab's user profiles are seen by every signed-in
user) and is null for an anonymous one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import strawberry
from strawberry import relay

from app import models
from app.graphql.context import Info
from app.graphql.nodes import row_ids


@strawberry.type
class User(relay.Node):
    id: relay.NodeID[int]
    username: str
    name: str | None
    created_at: dt.datetime
    user_id: strawberry.Private[int]
    admin: strawberry.Private[bool]

    @classmethod
    def from_row(cls, row: models.User) -> User:
        return cls(
            id=row.id,
            username=row.username,
            name=row.name,
            created_at=row.created_at,
            user_id=row.id,
            admin=row.is_admin,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[User | None]:
        rows = await info.context.loaders.user.load_many(row_ids(list(node_ids)))
        if info.context.actor is None:
            return [None for _ in rows]
        return [cls.from_row(row) if row is not None else None for row in rows]

    def admin_flag(self, info: Info) -> bool | None:
        actor = info.context.actor
        if actor is not None and (actor.is_admin or actor.user_id == self.user_id):
            return self.admin
        return None

    is_admin: bool | None = strawberry.field(
        resolver=admin_flag,
        description="Whether the user is an administrator; null unless the caller is an "
        "administrator or the user themselves.",
    )


@strawberry.type(description="A personal access token; its secret is shown only on creation.")
class AccessToken:
    id: int
    name: str
    scopes: list[str]
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: models.AccessToken) -> AccessToken:
        return cls(
            id=row.id,
            name=row.name,
            scopes=list(row.scopes),
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            created_at=row.created_at,
        )


@strawberry.type
class CreatedAccessToken:
    token: AccessToken
    secret: str = strawberry.field(description="The token itself. It is not shown again.")
