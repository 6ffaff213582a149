"""Who sent an HTTP request: a personal access token as `Authorization: Bearer <token>`
(what MLFLOW_TRACKING_TOKEN sends) or as the password of HTTP Basic (what
MLFLOW_TRACKING_USERNAME/PASSWORD send). No header means an anonymous caller."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection

from app.db import Database
from app.errors import UnauthenticatedError
from app.services import auth
from app.services.actor import Actor

WWW_AUTHENTICATE = 'Bearer realm="modelreg", Basic realm="modelreg"'


async def actor_from_request(connection: HTTPConnection, database: Database) -> Actor | None:
    """The authenticated actor, None when no credentials were sent, or
    UnauthenticatedError when they were sent but are malformed or not valid."""
    header = connection.headers.get("authorization")
    if header is None:
        return None
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
