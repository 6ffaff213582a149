"""Passwords and browser sessions.

- A password is stored as an argon2id hash (argon2-cffi's defaults); it is at least
  `MIN_PASSWORD_LENGTH` characters. Setting one ends every session of the user.
- Signing in takes a username and password, or an access token, and opens a session:
  a random secret for the session cookie and a random CSRF token, of which only SHA-256
  digests are stored (both are long and random, so no key derivation is needed). An
  unknown user, a user without a password and a wrong password get the same
  `UnauthenticatedError`, after the same argon2 work (a dummy hash stands in). A blocked
  user cannot sign in.
- A session lasts `session_lifetime_days` from its sign-in (a fixed term, not sliding);
  one opened with a token ends no later than the token, keeps the token's scopes, and
  ends when the token is revoked. Sessions end when their user signs out, is blocked or
  gets a new password; the rows are deleted.
- `authenticate` turns a cookie secret into the session's actor, or None when the
  cookie opens no live session (the caller is then anonymous). Like token verdicts
  (`auth.CACHE_SECONDS`), a verdict is reused in one process for that long: an ending
  made in the same process takes effect at once, one made elsewhere (another API
  process, the command line) within that time.
- Sign-in and sign-out are audit events (`session.sign_in`, `session.sign_out`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import argon2
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import InvalidValueError, UnauthenticatedError
from app.models import AccessToken, BrowserSession, User
from app.services import audit, auth
from app.services.actor import SCOPE_API, Actor

MIN_PASSWORD_LENGTH = 8
# Far above any password a person types; bounds the work a request can ask of argon2.
MAX_PASSWORD_LENGTH = 1024
WRONG_CREDENTIALS = "wrong username or password"
# last_seen_at is written at most this often per session.
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)

_hasher = argon2.PasswordHasher()


# --- passwords ---------------------------------------------------------------------------


def validated_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValueError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidValueError(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )
    return password


async def set_password(
    session: AsyncSession, *, user: User, password: str, actor: Actor | None
) -> None:
    """Give the user a new password; every session they had ends."""
    validated_password(password)
    user.password_hash = await asyncio.to_thread(_hasher.hash, password)
    await end_user_sessions(session, user=user)
    await audit.record(
        session,
        actor=actor,
        action="user.set_password",
        target=user,
        details={"user": user.username},
    )


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _password_matches(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; the same argon2 work whether or not there is a hash."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


# --- signing in and out ------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """A new session and its two secrets, handed to the browser once and never stored."""

    session: BrowserSession
    username: str
    secret: str
    csrf_token: str


async def sign_in_with_password(
    session: AsyncSession, *, username: str, password: str, lifetime: dt.timedelta
) -> SignedIn:
    """Open a session for the user whose password this is."""
    user = await session.scalar(sa.select(User).where(User.username == username))
    password_hash = user.password_hash if user is not None else None
    if len(password) > MAX_PASSWORD_LENGTH:
        # No stored password is this long: the dummy hash does the same work and fails.
        password_hash, password = None, password[:MAX_PASSWORD_LENGTH]
    matches = await asyncio.to_thread(_password_matches, password_hash, password)
    if user is None or password_hash is None or not matches:
        raise UnauthenticatedError(WRONG_CREDENTIALS)
    if not user.is_active:
        raise UnauthenticatedError("the user is blocked")
    if _hasher.check_needs_rehash(password_hash):
        user.password_hash = await asyncio.to_thread(_hasher.hash, password)
    actor = Actor(user_id=user.id, username=user.username, is_admin=user.is_admin)
    return await _open(
        session, user=user, actor=actor, scopes=[SCOPE_API], expires_at=utcnow() + lifetime
    )


async def sign_in_with_token(
    session: AsyncSession, *, database: Database, token: str, lifetime: dt.timedelta
) -> SignedIn:
    """Open a session for the owner of an access token, with the token's scopes, ending
    no later than the token."""
    actor = await auth.authenticate(database, token)
    user = await session.get(User, actor.user_id)
    access_token = await session.get(AccessToken, actor.token_id)
    if user is None or access_token is None:
        raise UnauthenticatedError("the access token is not valid")
    expires_at = utcnow() + lifetime
    if access_token.expires_at is not None:
        expires_at = min(expires_at, access_token.expires_at)
    return await _open(
        session,
        user=user,
        actor=actor,
        scopes=sorted(actor.scopes),
        expires_at=expires_at,
        access_token=access_token,
    )


async def _open(
    session: AsyncSession,
    *,
    user: User,
    actor: Actor,
    scopes: Sequence[str],
    expires_at: dt.datetime,
    access_token: AccessToken | None = None,
) -> SignedIn:
    # Sessions of the user that expired are removed as a new one opens.
    await session.execute(
        sa.delete(BrowserSession).where(
            BrowserSession.user_id == user.id, BrowserSession.expires_at <= utcnow()
        )
    )
    secret = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    row = BrowserSession(
        user_id=user.id,
        access_token_id=access_token.id if access_token is not None else None,
        digest=auth.digest(secret),
        csrf_digest=auth.digest(csrf_token),
        scopes=list(scopes),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="session.sign_in",
        target=row,
        details={"user": user.username, "with": "token" if access_token else "password"},
    )
    return SignedIn(session=row, username=user.username, secret=secret, csrf_token=csrf_token)


async def sign_out(session: AsyncSession, *, verdict: SessionVerdict) -> None:
    """End the session the verdict is about."""
    row = await session.get(BrowserSession, verdict.session_id)
    if row is not None:
        await session.delete(row)
        await session.flush()
        await audit.record(
            session,
            actor=verdict.actor,
            action="session.sign_out",
            target=row,
            details={"user": verdict.actor.username},
        )
    _forget(lambda cached: cached.session_id == verdict.session_id)


async def end_user_sessions(session: AsyncSession, *, user: User) -> int:
    """End every session of the user (blocked, new password, or asked); how many ended."""
    result = await session.execute(
        sa.delete(BrowserSession)
        .where(BrowserSession.user_id == user.id)
        .returning(BrowserSession.id)
    )
    ended = len(result.all())
    _forget(lambda cached: cached.actor.user_id == user.id)
    return ended


# --- authenticating a cookie -------------------------------------------------------------


@dataclass(frozen=True)
class SessionVerdict:
    """What a session cookie stands for: the session, its actor, and its CSRF digest."""

    session_id: int
    actor: Actor
    csrf_digest: str
    expires_at: dt.datetime
    checked_at: float

    def csrf_matches(self, token: str | None) -> bool:
        """Whether `token` is this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(auth.digest(token), self.csrf_digest)


_cache: dict[str, SessionVerdict] = {}


async def authenticate(database: Database, secret: str) -> SessionVerdict | None:
    """The live session a cookie secret opens, or None. One indexed lookup per session
    per `auth.CACHE_SECONDS`."""
    key = auth.digest(secret)
    now = time.monotonic()
    verdict = _cache.get(key)
    if verdict is None or now - verdict.checked_at > auth.CACHE_SECONDS:
        _cache.pop(key, None)
        verdict = await _look_up(database, key, now)
        if verdict is None:
            return None
        _cache[key] = verdict
    if verdict.expires_at <= utcnow():
        _cache.pop(key, None)
        return None
    return verdict


async def _look_up(database: Database, key: str, now: float) -> SessionVerdict | None:
    async with database.session() as session:
        row = (
            await session.execute(
                sa.select(BrowserSession, User, AccessToken)
                .join(User, User.id == BrowserSession.user_id)
                .outerjoin(AccessToken, AccessToken.id == BrowserSession.access_token_id)
                .where(BrowserSession.digest == key)
            )
        ).one_or_none()
        if row is None:
            return None
        browser_session, user, token = row
        if not user.is_active or browser_session.expires_at <= utcnow():
            return None
        if token is not None and token.revoked_at is not None:
            return None
        if browser_session.last_seen_at < utcnow() - LAST_SEEN_RESOLUTION:
            browser_session.last_seen_at = utcnow()
        actor = Actor(
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            token_id=browser_session.access_token_id,
            scopes=frozenset(browser_session.scopes),
        )
        return SessionVerdict(
            session_id=browser_session.id,
            actor=actor,
            csrf_digest=browser_session.csrf_digest,
            expires_at=browser_session.expires_at,
            checked_at=now,
        )


def _forget(ended: Callable[[SessionVerdict], bool]) -> None:
    for key in [key for key, verdict in _cache.items() if ended(verdict)]:
        _cache.pop(key, None)


def forget_cached_sessions() -> None:
    """Drop every cached verdict (a user was blocked or demoted)."""
    _cache.clear()
