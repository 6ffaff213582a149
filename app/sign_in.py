"""Browser sign-in and sign-out (`app.services.sessions` holds the rules).

- ``GET /sign-in``: a plain HTML form (no script, nothing from another host).
- ``POST /sign-in``: fields ``username`` + ``password``, or ``token`` (an access token),
  and an optional ``next``, sent as a form (application/x-www-form-urlencoded) or as JSON.
  On success the session cookie ``modelreg_session`` (HttpOnly, SameSite=Lax) and the CSRF
  cookie ``modelreg_csrf`` (readable by the server's own pages, SameSite=Strict) are set,
  both with Path=/, the session's Max-Age, and Secure when the request came over https
  (as `app.external_urls` sees it). The answer is 303 to ``next`` when it is a local path
  (one leading "/"), else to ``/graphql``; a caller that accepts application/json gets
  200 ``{"username", "expiresAt"}`` instead. Wrong credentials answer 401 with one
  message whatever was wrong. Too many failed attempts answer 429, and a server too busy
  checking passwords 503, both with Retry-After (`app.services.sign_in_limits`; attempts
  count by username and by the client's address: the peer, or with
  ``MODELREG_TRUSTED_PROXY_HEADERS`` the last X-Forwarded-For value). A request that a
  browser marks as coming from another site (``Sec-Fetch-Site: cross-site``) is refused
  (403): nobody is signed in behind their back.
- ``POST /sign-out``: ends the cookie's session (with the ``X-CSRF-Token`` header, like
  every cookie-authenticated write) and clears both cookies; 204.

Refusals answer JSON ``{"message", "error"}`` to a caller that accepts JSON, else the form
again with the message.
"""

from __future__ import annotations

import datetime as dt
import html
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app import http_bodies
from app.db import utcnow
from app.errors import DomainError, ForbiddenError, InvalidValueError, UnauthenticatedError
from app.external_urls import external_base
from app.http_auth import CSRF_COOKIE, SESSION_COOKIE, browser_session
from app.http_bodies import JSON_MEDIA_TYPE, RequestRefusedError, UnsupportedMediaTypeError
from app.runtime import get_runtime
from app.services import sessions
from app.services.sign_in_limits import RetryLaterError

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# Credentials and a path: a few hundred bytes; the limit leaves room and bounds the work.
BODY_LIMIT = 16 * 1024
DEFAULT_NEXT = "/graphql"


async def sign_in_form(request: Request) -> Response:
    return _form_page(next_path=request.query_params.get("next", ""), message=None, status=200)


async def sign_in(request: Request) -> Response:
    runtime = get_runtime(request)
    fields: dict[str, Any] = {}
    try:
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise ForbiddenError("signing in from another site is not allowed")
        fields = await _fields(request)
        lifetime = dt.timedelta(days=runtime.settings.session_lifetime_days)
        limits = runtime.sign_in_limits
        address = _client_address(request)
        if fields.get("token"):
            async with limits.attempt(address=address), runtime.database.session() as session:
                signed_in = await sessions.sign_in_with_token(
                    session, database=runtime.database, token=fields["token"], lifetime=lifetime
                )
        elif fields.get("username") and fields.get("password"):
            async with (
                limits.attempt(address=address, username=fields["username"]),
                limits.password_check(),
                runtime.database.session() as session,
            ):
                signed_in = await sessions.sign_in_with_password(
                    session,
                    username=fields["username"],
                    password=fields["password"],
                    lifetime=lifetime,
                )
        else:
            raise InvalidValueError("send a username and a password, or an access token")
    except DomainError as error:
        return _refusal(request, error, next_path=str(fields.get("next") or ""))
    expires_at = signed_in.session.expires_at
    response: Response
    if _accepts_json(request):
        response = JSONResponse(
            {"username": signed_in.username, "expiresAt": expires_at.isoformat()}
        )
    else:
        response = RedirectResponse(_local_path(fields.get("next")), status_code=303)
    max_age = max(0, round((expires_at - utcnow()).total_seconds()))
    secure = _over_https(request)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        signed_in.csrf_token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    database = get_runtime(request).database
    try:
        verdict = await browser_session(request, database)
        if verdict is not None:
            async with database.session() as session:
                await sessions.sign_out(session, verdict=verdict)
    except DomainError as error:
        return _refusal(request, error, next_path="")
    response = Response(status_code=204)
    secure = _over_https(request)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
    return response


async def _fields(request: Request) -> dict[str, Any]:
    """The posted fields, from a form or a JSON object; only strings are kept."""
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in (FORM_MEDIA_TYPE, JSON_MEDIA_TYPE):
        raise UnsupportedMediaTypeError(content_type)
    body = await http_bodies.read_body(request, limit=BODY_LIMIT)
    if media_type == JSON_MEDIA_TYPE:
        document = http_bodies.parse_json(body)
        if not isinstance(document, dict):
            raise InvalidValueError("the request's JSON must be an object")
        items = list(document.items())
    else:
        try:
            items = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise InvalidValueError("the form is not valid UTF-8") from None
    return {name: value for name, value in items if isinstance(value, str)}


def _local_path(next_path: object) -> str:
    """`next` when it is a path on this server (not //host or /\\host), else the default."""
    if (
        isinstance(next_path, str)
        and next_path.startswith("/")
        and not next_path.startswith(("//", "/\\"))
        and next_path.isprintable()
    ):
        return next_path
    return DEFAULT_NEXT


def _client_address(request: Request) -> str:
    """Who signs in: the peer, or behind a trusted proxy the address that proxy saw (the
    last X-Forwarded-For value; the ones before it are whatever the client sent)."""
    if get_runtime(request).settings.trusted_proxy_headers:
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        if last := forwarded.rsplit(",", 1)[-1].strip():
            return last
    return request.client.host if request.client is not None else ""


def _over_https(request: Request) -> bool:
    base = external_base(request, get_runtime(request).settings)
    return (base or request.url.scheme + "://").startswith("https://")


def _accepts_json(request: Request) -> bool:
    return JSON_MEDIA_TYPE in request.headers.get("accept", "")


def _refusal(request: Request, error: DomainError, *, next_path: str) -> Response:
    if isinstance(error, RequestRefusedError | RetryLaterError):
        status = error.status
    elif isinstance(error, UnauthenticatedError):
        status = 401
    elif isinstance(error, ForbiddenError):
        status = 403
    else:
        status = 400
    response: Response
    if _accepts_json(request):
        response = JSONResponse({"message": error.message, "error": error.code}, status_code=status)
    else:
        response = _form_page(next_path=next_path, message=error.message, status=status)
    if isinstance(error, RetryLaterError):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _form_page(*, next_path: str, message: str | None, status: int) -> HTMLResponse:
    notice = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    next_field = html.escape(next_path, quote=True)
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in · modelreg</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<h1>Sign in to modelreg</h1>
{notice}
<form method="post">
<input type="hidden" name="next" value="{next_field}">
<p><label>Username <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password"
 autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<form method="post">
<input type="hidden" name="next" value="{next_field}">
<p><label>Or an access token <input name="token" type="password"
 autocomplete="off" required></label></p>
<p><button type="submit">Sign in with the token</button></p>
</form>
</body>
</html>
""",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/sign-in", sign_in_form, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]
