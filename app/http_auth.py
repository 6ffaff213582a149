"""Who sent an HTTP request: a personal access token as `Authorization: Bearer <token>`
(what MLFLOW_TRACKING_TOKEN sends) or as the password of HTTP Basic (what
MLFLOW_TRACKING_USERNAME/PASSWORD send), else the browser session of the
`modelreg_session` cookie. A request with an Authorization header ignores cookies. No
credentials, or a cookie that opens no live session, mean an anonymous caller.

Cookies are sent by browsers on their own, so a cookie-authenticated request with a method
other than GET, HEAD or OPTIONS must prove it comes from a page of ours: its
`X-CSRF-Token` header carries the session's CSRF token (the `modelreg_csrf` cookie, which
only pages of the server's own origin can read). Otherwise it is refused (ForbiddenError).
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection

from app.db import Database
from app.errors import ForbiddenError, UnauthenticatedError
from app.services import auth, sessions
from app.services.actor import Actor

WWW_AUTHENTICATE = 'Bearer realm="modelreg", Basic realm="modelreg"'
SESSION_COOKIE = "modelreg_session"
CSRF_COOKIE = "modelreg_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def actor_from_request(connection: HTTPConnection, database: Database) -> Actor | None:
    """The authenticated actor, None when no credentials were sent, or
    UnauthenticatedError when they were sent but are malformed or not valid."""
    header = connection.headers.get("authorization")
    if header is None:
        verdict = await browser_session(connection, database)
        return verdict.actor if verdict is not None else None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        secret = credentials
    elif scheme.lower() == "basic":
        secret = _basic_password(credentials)
    else:
        raise UnauthenticatedError(
            f"unsupported authorization scheme '{scheme}'; send a Bearer token or Basic credentials"
        )
    if not secret or " " in secret:
        raise UnauthenticatedError("the Authorization header is malformed")
    return await auth.authenticate(database, secret)


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise UnauthenticatedError("the Basic credentials are not valid base64") from None
    _username, separator, password = decoded.partition(":")
    if not separator:
        raise UnauthenticatedError("the Basic credentials lack a password")
    return password


async def browser_session(
    connection: HTTPConnection, database: Database
) -> sessions.SessionVerdict | None:
    """The live session the request's cookie opens, or None; ForbiddenError when the
    method is not safe and the CSRF header is missing or wrong."""
    secret = connection.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    verdict = await sessions.authenticate(database, secret)
    if verdict is None:
        return None
    method = connection.scope.get("method", "GET")
    if method not in SAFE_METHODS and not verdict.csrf_matches(connection.headers.get(CSRF_HEADER)):
        raise ForbiddenError(
            f"a request signed in by cookie must send the {CSRF_HEADER} header with the "
            f"value of the {CSRF_COOKIE} cookie"
        )
    return verdict
