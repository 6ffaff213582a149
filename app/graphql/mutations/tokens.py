"""Personal access tokens: the caller's own, or anyone's for administrators."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from app.errors import NotFoundError as MissingError
from app.graphql.context import Info
from app.graphql.errors import NotFoundError, PermissionError, ValidationError
from app.graphql.types.users import AccessToken, CreatedAccessToken
from app.services import auth, policy, users
from app.services.actor import SCOPE_API

TokenCreateResult = Annotated[
    CreatedAccessToken | ValidationError | NotFoundError | PermissionError,
    strawberry.union("TokenCreateResult"),
]
TokenRevokeResult = Annotated[
    AccessToken | NotFoundError | PermissionError,
    strawberry.union("TokenRevokeResult"),
]


@strawberry.input
class TokenCreateInput:
    name: str
    scopes: list[str] = strawberry.field(default_factory=lambda: [SCOPE_API])
    expires_at: dt.datetime | None = None
    username: str | None = strawberry.field(
        default=None, description="Whose token; another user's needs an administrator."
    )


async def token_create(info: Info, input: TokenCreateInput) -> TokenCreateResult:
    actor = policy.require_user(info.context.actor, write=True)
    username = input.username or actor.username
    if username != actor.username:
        policy.require_admin(actor)
    async with info.context.database.session() as session:
        user = await users.get_user(session, username=username)
        row, secret = await auth.create_token(
            session,
            user=user,
            name=input.name,
            scopes=input.scopes,
            expires_at=input.expires_at,
            actor=actor,
        )
    return CreatedAccessToken(token=AccessToken.from_row(row), secret=secret)


async def token_revoke(info: Info, id: int) -> TokenRevokeResult:
    actor = policy.require_user(info.context.actor, write=True)
    async with info.context.database.session() as session:
        row = await auth.get_token(session, token_id=id)
        if row.user_id != actor.user_id and not actor.is_admin:
            raise MissingError(f"Token {id} does not exist", field="id")
        await auth.revoke_token(session, token=row, actor=actor)
    return AccessToken.from_row(row)
