"""Users, and the first administrator."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rows_by_id
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import User
from app.services import audit, auth
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


async def bootstrap_admin(session: AsyncSession, *, token: str | None) -> str | None:
    """Create the first administrator when there is none, with the given token or a
    fresh one. Returns a freshly generated secret (to be shown once), else None."""
    if await session.scalar(sa.select(User.id).where(User.is_admin.is_(True)).limit(1)):
        return None
    existing = await session.scalar(sa.select(User).where(User.username == ADMIN_USERNAME))
    admin = existing or await create_user(session, username=ADMIN_USERNAME, name="Administrator")
    admin.is_admin = True
    _, secret = await auth.create_token(session, user=admin, name="bootstrap", secret=token)
    logger.info("created the administrator '%s'", admin.username)
    return None if token else secret


async def usernames(session: AsyncSession, *, user_ids: set[int]) -> dict[int, str]:
    """Usernames by user id, in one query."""
    if not user_ids:
        return {}
    rows = await session.execute(sa.select(User.id, User.username).where(User.id.in_(user_ids)))
    return dict(rows.all())


async def get_users(session: AsyncSession, *, ids: Collection[int]) -> dict[int, User]:
    return await rows_by_id(session, User, ids)
