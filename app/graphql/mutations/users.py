"""Creating users (administrators only)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import ConflictError, PermissionError, ValidationError
from app.graphql.types.users import User
from app.services import policy, users

UserCreateResult = Annotated[
    User | ValidationError | ConflictError | PermissionError,
    strawberry.union("UserCreateResult"),
]


@strawberry.input
class UserCreateInput:
    username: str
    name: str | None = None
    email: str | None = None
    admin: bool = False


async def user_create(info: Info, input: UserCreateInput) -> UserCreateResult:
    actor = policy.require_admin(info.context.actor)
    async with info.context.database.session() as session:
        row = await users.create_user(
            session,
            username=input.username,
            name=input.name,
            email=input.email,
            is_admin=input.admin,
            actor=actor,
        )
    return User.from_row(row)
