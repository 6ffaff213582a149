"""Who is calling: personal access tokens and the actor they authenticate."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import InvalidValueError, NotFoundError, UnauthenticatedError
from app.models import AccessToken, User
from app.services import audit, policy
from app.services.actor import SCOPE_API, SCOPE_READ_API, Actor

SCOPES = (SCOPE_API, SCOPE_READ_API)
TOKEN_PREFIX = "mrpat-"

# A token's verdict is reused this long in one process; revocation elsewhere waits
# at most this long to take effect.
CACHE_SECONDS = 10.0
# last_used_at is written at most this often per token.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def digest(secret: str) -> str:
    """Tokens are random and long, so a fast hash suffices (no password KDF)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def validated_scopes(scopes: Sequence[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidValueError(
            f"scopes must be one or more of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}",
            field="scopes",
        )
    return sorted(set(scopes))


async def create_token(
    session: AsyncSession,
    *,
    user: User,
    name: str,
    scopes: Sequence[str] = (SCOPE_API,),
    expires_at: dt.datetime | None = None,
    secret: str | None = None,
    actor: Actor | None = None,
) -> tuple[AccessToken, str]:
    """Create a personal access token. Returns the row and the secret, which is shown
    once and never stored (only its digest is)."""
    if not name.strip():
        raise InvalidValueError("a token needs a name", field="name")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidValueError("the expiry date needs a UTC offset", field="expiresAt")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidValueError("the expiry date must be in the future", field="expiresAt")
    secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(30)
    if len(secret) < 20:
        raise InvalidValueError("a token must be at least 20 characters long", field="token")
    token = AccessToken(
        user_id=user.id,
        name=name.strip(),
        digest=digest(secret),
        scopes=validated_scopes(scopes),
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    await audit.record(
        session, actor=actor, action="token.create", target=token, details={"user": user.username}
    )
    return token, secret


async def revoke_token(
    session: AsyncSession, *, token: AccessToken, actor: Actor | None = None
) -> AccessToken:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
        await audit.record(session, actor=actor, action="token.revoke", target=token)
    _cache.pop(token.digest, None)
    return token


async def get_token(session: AsyncSession, *, token_id: int) -> AccessToken:
    token = await session.get(AccessToken, token_id)
    if token is None:
        raise NotFoundError(f"Token {token_id} does not exist", field="id")
    return token


async def list_tokens(
    session: AsyncSession, *, user: User | None, actor: Actor | None = None
) -> list[AccessToken]:
    """The tokens of `user`, or of every user (administrators only), oldest first,
    revoked and expired ones included. Rows hold digests only, never a secret."""
    query = sa.select(AccessToken).order_by(AccessToken.id)
    if user is None:
        policy.require_admin(actor)
    else:
        query = query.where(AccessToken.user_id == user.id)
    return list(await session.scalars(query))


@dataclass(frozen=True)
class _Verdict:
    actor: Actor
    expires_at: dt.datetime | None
    checked_at: float


_cache: dict[str, _Verdict] = {}


async def authenticate(database: Database, secret: str) -> Actor:
    """The actor a token secret stands for, or UnauthenticatedError saying why not.
    One indexed lookup per token per CACHE_SECONDS; no key derivation per request."""
    key = digest(secret)
    now = time.monotonic()
    verdict = _cache.get(key)
    if verdict is None or now - verdict.checked_at > CACHE_SECONDS:
        verdict = await _look_up(database, key, now)
        _cache[key] = verdict
    if verdict.expires_at is not None and verdict.expires_at <= utcnow():
        _cache.pop(key, None)
        raise UnauthenticatedError("the access token has expired")
    return verdict.actor


async def _look_up(database: Database, key: str, now: float) -> _Verdict:
    async with database.session() as session:
        row = (
            await session.execute(
                sa.select(AccessToken, User)
                .join(User, User.id == AccessToken.user_id)
                .where(AccessToken.digest == key)
            )
        ).one_or_none()
        if row is None:
            raise UnauthenticatedError("the access token is not valid")
        token, user = row
        if token.revoked_at is not None:
            raise UnauthenticatedError("the access token has been revoked")
        if not user.is_active:
            raise UnauthenticatedError("the token's user is blocked")
        if token.expires_at is not None and token.expires_at <= utcnow():
            raise UnauthenticatedError("the access token has expired")
        if token.last_used_at is None or token.last_used_at < utcnow() - LAST_USED_RESOLUTION:
            token.last_used_at = utcnow()
        actor = Actor(
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            token_id=token.id,
            scopes=frozenset(token.scopes),
        )
        return _Verdict(actor=actor, expires_at=token.expires_at, checked_at=now)


def forget_cached_tokens() -> None:
    """Drop every cached verdict (a user was blocked or demoted)."""
    _cache.clear()
