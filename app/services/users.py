"""Users, and the first administrator."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rows_by_id
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import User
from app.services import audit, auth, policy, sessions
from app.services.actor import Actor

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
_USERNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    name: str | None = None,
    email: str | None = None,
    is_admin: bool = False,
    actor: Actor | None = None,
) -> User:
    if not _USERNAME.match(username):
        raise InvalidValueError(
            f"'{username}' is not a valid username: letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            field="username",
        )
    if await session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise AlreadyExistsError(f"User '{username}' already exists", field="username")
    user = User(username=username, name=name, email=email, is_admin=is_admin)
    session.add(user)
    await session.flush()
    await audit.record(session, actor=actor, action="user.create", target=user)
    return user


async def get_user(session: AsyncSession, *, username: str) -> User:
    user = await session.scalar(sa.select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"User '{username}' does not exist", field="username")
    return user


async def list_users(session: AsyncSession, *, actor: Actor | None) -> list[User]:
    """Every user, by username; administrators only."""
    policy.require_admin(actor)
    return list(await session.scalars(sa.select(User).order_by(User.username)))


async def set_blocked(
    session: AsyncSession, *, user: User, blocked: bool, actor: Actor | None
) -> bool:
    """Block a user (their tokens stop authenticating, their browser sessions end) or
    unblock them; administrators only. Returns whether anything changed; only a change is
    audited.

    Processes that cached a verdict on one of the user's tokens or sessions keep it for at
    most `auth.CACHE_SECONDS`.
    """
    policy.require_admin(actor)
    if user.is_active != blocked:
        return False  # already in the state asked for
    user.is_active = not blocked
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="user.block" if blocked else "user.unblock",
        target=user,
        details={"user": user.username},
    )
    if blocked:
        await sessions.end_user_sessions(session, user=user)
    auth.forget_cached_tokens()
    return True


@dataclass(frozen=True)
class AdminBootstrap:
    """What `bootstrap_admin` found or did. `secret` is set only when it generated one
    (to be shown once); `created` tells a new administrator from an existing one."""

    username: str
    created: bool
    secret: str | None


async def bootstrap_admin(session: AsyncSession, *, token: str | None) -> AdminBootstrap:
    """Create the first administrator when there is none, with the given token or a
    fresh one."""
    first_admin = await session.scalar(
        sa.select(User.username).where(User.is_admin.is_(True)).order_by(User.id).limit(1)
    )
    if first_admin is not None:
        return AdminBootstrap(username=first_admin, created=False, secret=None)
    existing = await session.scalar(sa.select(User).where(User.username == ADMIN_USERNAME))
    admin = existing or await create_user(session, username=ADMIN_USERNAME, name="Administrator")
    admin.is_admin = True
    _, secret = await auth.create_token(session, user=admin, name="bootstrap", secret=token)
    logger.info("created the administrator '%s'", admin.username)
    return AdminBootstrap(username=admin.username, created=True, secret=None if token else secret)


async def usernames(session: AsyncSession, *, user_ids: set[int]) -> dict[int, str]:
    """Usernames by user id, in one query."""
    if not user_ids:
        return {}
    rows = await session.execute(_USERNAMES, {"ids": list(user_ids)})
    return dict(rows.all())


# Every run an MLflow call answers with names its user: built once (see `app.db`).
_USERNAMES = sa.select(User.id, User.username).where(
    User.id.in_(sa.bindparam("ids", expanding=True))
)


async def get_users(session: AsyncSession, *, ids: Collection[int]) -> dict[int, User]:
    return await rows_by_id(session, User, ids)
