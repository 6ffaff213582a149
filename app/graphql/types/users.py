"""Users and their access tokens."""

from __future__ import annotations

import datetime as dt

import strawberry

from app import models


@strawberry.type
class User:
    username: str
    name: str | None
    is_admin: bool
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: models.User) -> User:
        return cls(
            username=row.username, name=row.name, is_admin=row.is_admin, created_at=row.created_at
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
