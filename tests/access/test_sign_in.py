"""Browser sign-in on the in-process app: passwords and tokens open a server-side session
held in an HttpOnly cookie; it authenticates GraphQL, package downloads and the MLflow
surfaces, ends on sign-out, blocking, a new password or its expiry, and every
cookie-authenticated write needs the CSRF header. CORS lets configured origins call
/graphql with a token. The `modelreg user` commands give users passwords."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.db import Database, utcnow
from app.errors import UnauthenticatedError
from app.models import AuditEvent, BrowserSession, Project, User
from app.services import auth, sessions, users
from app.services.actor import OPERATOR, SCOPE_READ_API
from app.settings import Settings
from tests.cli_support import COMMAND_TIMEOUT, MODELREG, clean_environment
from tests.clients import app_settings, bearer, serving

PASSWORD = "correct horse battery"
VIEWER = "{ viewer { user { username } } }"
CREATE_PROJECT = 'mutation { projectCreate(input: {path: "fresh"}) { __typename } }'
JSON = {"Accept": "application/json"}
ORIGIN = "https://app.example.com"


@pytest.fixture(autouse=True)
def _fresh_session_cache() -> None:
    sessions.forget_cached_sessions()


@dataclass
class Registry:
    database: Database
    token: str  # alice's `api` token


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    """Alice, an administrator with a password and a token; bob, blocked, with a password."""
    database = Database(database_url)
    async with database.session() as session:
        alice = await users.create_user(session, username="alice", is_admin=True)
        await sessions.set_password(session, user=alice, password=PASSWORD, actor=OPERATOR)
        _, token = await auth.create_token(session, user=alice, name="t")
        bob = await users.create_user(session, username="bob")
        await sessions.set_password(session, user=bob, password=PASSWORD, actor=OPERATOR)
        await users.set_blocked(session, user=bob, blocked=True, actor=OPERATOR)
    try:
        yield Registry(database, token)
    finally:
        await database.dispose()


@contextlib.asynccontextmanager
async def app_client(
    tmp_path: Path, database_url: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    configured = app_settings(tmp_path, database_url).model_copy(update=settings)
    async with serving(configured) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    return await client.post("/sign-in", json=fields, headers=JSON)


async def viewer(client: httpx.AsyncClient) -> str | None:
    """Who the client's cookies sign in, asked by GET (a query: no CSRF header needed)."""
    response = await client.get("/graphql", params={"query": VIEWER}, headers=JSON)
    assert response.status_code == 200, response.text
    user = response.json()["data"]["viewer"]
    return None if user is None or user["user"] is None else str(user["user"]["username"])


async def project_paths(database: Database) -> list[str]:
    async with database.session(read_only=True) as session:
        return list(await session.scalars(sa.select(Project.path).order_by(Project.path)))


async def session_count(database: Database) -> int:
    async with database.session(read_only=True) as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(BrowserSession))
        return int(count or 0)


# --- signing in ------------------------------------------------------------------------


async def test_a_password_sign_in_sets_both_cookies_and_redirects_to_a_local_next(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        form = await client.get("/sign-in?next=/models")
        response = await client.post(
            "/sign-in", data={"username": "alice", "password": PASSWORD, "next": "/models"}
        )
        signed_in_as = await viewer(client)
        elsewhere = await client.post(
            "/sign-in", data={"username": "alice", "password": PASSWORD, "next": "//evil.test/x"}
        )

    assert form.status_code == 200
    assert form.headers["content-type"] == "text/html; charset=utf-8"
    assert '<input type="hidden" name="next" value="/models">' in form.text
    assert "<script" not in form.text and "http" not in form.text.split("<body>")[1]
    assert response.status_code == 303
    assert response.headers["location"] == "/models"
    cookies = sorted(response.headers.get_list("set-cookie"))
    assert len(cookies) == 2
    csrf_cookie, session_cookie = cookies
    max_age = 14 * 24 * 3600
    assert csrf_cookie.startswith("modelreg_csrf=")
    assert session_cookie.startswith("modelreg_session=")
    assert sorted(csrf_cookie.split("; ")[1:]) == [
        f"Max-Age={max_age}",
        "Path=/",
        "SameSite=strict",
    ]
    assert sorted(session_cookie.split("; ")[1:]) == [
        "HttpOnly",
        f"Max-Age={max_age}",
        "Path=/",
        "SameSite=lax",
    ]
    assert signed_in_as == "alice"
    assert elsewhere.status_code == 303
    assert elsewhere.headers["location"] == "/graphql"


async def test_cookies_are_secure_when_the_request_came_over_https(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url, trusted_proxy_headers=True) as client:
        response = await client.post(
            "/sign-in",
            data={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "models.example.com"},
        )

    assert response.status_code == 303
    for cookie in response.headers.get_list("set-cookie"):
        assert "; Secure" in cookie, cookie


async def test_a_json_caller_gets_the_username_and_expiry_and_the_sign_in_is_audited(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        before = utcnow()
        response = await sign_in(client, username="alice", password=PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "alice"
    expires_at = dt.datetime.fromisoformat(body["expiresAt"])
    assert before + dt.timedelta(days=14) <= expires_at <= utcnow() + dt.timedelta(days=14)
    async with registry.database.session(read_only=True) as session:
        row = await session.scalar(sa.select(BrowserSession))
        events = (
            await session.execute(
                sa.select(AuditEvent.action, AuditEvent.details).where(
                    AuditEvent.action.like("session.%")
                )
            )
        ).all()
    assert row is not None
    # Digests only: neither secret is stored.
    assert row.digest == auth.digest(response.cookies["modelreg_session"])
    assert row.csrf_digest == auth.digest(response.cookies["modelreg_csrf"])
    assert [tuple(event) for event in events] == [
        ("session.sign_in", {"user": "alice", "with": "password"})
    ]


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        wrong = await sign_in(client, username="alice", password="not the password")
        unknown = await sign_in(client, username="nobody", password=PASSWORD)
        wrong_form = await client.post(
            "/sign-in", data={"username": "alice", "password": "not the password"}
        )
        unknown_form = await client.post(
            "/sign-in", data={"username": "nobody", "password": PASSWORD}
        )

    assert (wrong.status_code, wrong.json()) == (
        401,
        {"message": "wrong username or password", "error": "unauthenticated"},
    )
    assert (unknown.status_code, unknown.content) == (401, wrong.content)
    assert wrong_form.status_code == unknown_form.status_code == 401
    assert wrong_form.text == unknown_form.text
    assert "wrong username or password" in wrong_form.text
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers
    assert await session_count(registry.database) == 0


async def test_a_blocked_user_cannot_sign_in_and_blocking_ends_their_sessions(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        refused = await sign_in(client, username="bob", password=PASSWORD)
        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        assert await viewer(client) == "alice"
        async with registry.database.session() as session:
            alice = await users.get_user(session, username="alice")
            await users.set_blocked(session, user=alice, blocked=True, actor=OPERATOR)
        after_block = await viewer(client)

    assert refused.status_code == 401
    assert refused.json()["message"] == "the user is blocked"
    assert after_block is None
    assert await session_count(registry.database) == 0


async def test_a_token_signs_in_with_its_scopes_and_the_session_ends_with_the_token(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with registry.database.session() as session:
        alice = await users.get_user(session, username="alice")
        token, secret = await auth.create_token(
            session, user=alice, name="read", scopes=[SCOPE_READ_API]
        )
    async with app_client(tmp_path, database_url) as client:
        response = await sign_in(client, token=secret)
        csrf = {"X-CSRF-Token": client.cookies["modelreg_csrf"]}
        signed_in_as = await viewer(client)
        write = await client.post("/graphql", json={"query": CREATE_PROJECT}, headers=csrf)
        bad_token = await sign_in(client, token="mrpat-" + "x" * 40)
        async with registry.database.session() as session:
            revoked = await auth.get_token(session, token_id=token.id)
            await auth.revoke_token(session, token=revoked)
        sessions.forget_cached_sessions()  # as another process sees it after the cache time
        after_revoke = await viewer(client)

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert signed_in_as == "alice"
    # A read_api token opens a read-only session.
    assert write.json()["data"]["projectCreate"]["__typename"] == "PermissionError"
    assert await project_paths(registry.database) == ["default"]
    assert bad_token.status_code == 401
    assert after_revoke is None


async def test_a_sign_in_without_credentials_or_from_another_site_is_refused(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        empty = await sign_in(client, username="alice")
        text = await client.post(
            "/sign-in", content=b"alice", headers={"Content-Type": "text/plain", **JSON}
        )
        cross_site = await client.post(
            "/sign-in",
            data={"username": "alice", "password": PASSWORD},
            headers={"Sec-Fetch-Site": "cross-site", **JSON},
        )

    assert (empty.status_code, empty.json()["error"]) == (400, "invalid_value")
    assert (text.status_code, text.json()["error"]) == (415, "unsupported_media_type")
    assert (cross_site.status_code, cross_site.json()["error"]) == (403, "forbidden")
    assert await session_count(registry.database) == 0


# --- sessions ending -------------------------------------------------------------------


async def test_an_expired_session_is_anonymous(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        async with registry.database.session() as session:
            await session.execute(
                sa.update(BrowserSession).values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )
        assert await viewer(client) is None


async def test_sign_out_needs_the_csrf_header_then_ends_the_session_and_clears_the_cookies(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        secret = client.cookies["modelreg_session"]
        csrf = client.cookies["modelreg_csrf"]
        refused = await client.post("/sign-out", headers=JSON)
        still = await viewer(client)
        signed_out = await client.post("/sign-out", headers={"X-CSRF-Token": csrf})
        cleared = dict(client.cookies)
        client.cookies.set("modelreg_session", secret)
        replayed = await viewer(client)

    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert still == "alice"
    assert signed_out.status_code == 204
    assert cleared == {}
    assert replayed is None
    assert await session_count(registry.database) == 0
    async with registry.database.session(read_only=True) as session:
        actions = list(
            await session.scalars(
                sa.select(AuditEvent.action)
                .where(AuditEvent.action.like("session.%"))
                .order_by(AuditEvent.id)
            )
        )
    assert actions == ["session.sign_in", "session.sign_out"]


async def test_a_new_password_ends_the_sessions_and_only_it_signs_in(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        async with registry.database.session() as session:
            alice = await users.get_user(session, username="alice")
            await sessions.set_password(
                session, user=alice, password="a new passphrase", actor=OPERATOR
            )
        after_change = await viewer(client)
        old = await sign_in(client, username="alice", password=PASSWORD)
        new = await sign_in(client, username="alice", password="a new passphrase")

    assert after_change is None
    assert old.status_code == 401
    assert new.status_code == 200


# --- CSRF and the surfaces -------------------------------------------------------------


async def test_a_cookie_authenticated_graphql_mutation_needs_the_csrf_header(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    async with app_client(tmp_path, database_url) as client:
        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        csrf = client.cookies["modelreg_csrf"]
        missing = await client.post("/graphql", json={"query": CREATE_PROJECT})
        wrong = await client.post(
            "/graphql", json={"query": CREATE_PROJECT}, headers={"X-CSRF-Token": "x" + csrf}
        )
        unchanged = await project_paths(registry.database)
        read_by_get = await client.get("/graphql", params={"query": VIEWER}, headers=JSON)
        done = await client.post(
            "/graphql", json={"query": CREATE_PROJECT}, headers={"X-CSRF-Token": csrf}
        )
        # An Authorization header wins: the cookie is not looked at.
        with_bad_token = await client.post(
            "/graphql", json={"query": VIEWER}, headers=bearer("mrpat-" + "x" * 40)
        )

    for refused in (missing, wrong):
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert unchanged == ["default"]
    assert read_by_get.json() == {"data": {"viewer": {"user": {"username": "alice"}}}}
    assert done.json() == {"data": {"projectCreate": {"__typename": "Project"}}}
    assert await project_paths(registry.database) == ["default", "fresh"]
    assert with_bad_token.status_code == 401


async def test_cookies_download_packages_and_artifacts_and_mlflow_writes_need_the_header(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    package_url = "/api/v1/projects/default/packages/generic/seed/1.0.0/data/file.bin"
    async with app_client(tmp_path, database_url) as client:
        token = bearer(registry.token)
        assert (await client.put(package_url, content=b"0123456789", headers=token)).is_success
        run = await client.post(
            "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, headers=token
        )
        run_id = run.json()["run"]["info"]["run_id"]
        artifact_url = f"/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/notes.txt"
        assert (await client.put(artifact_url, content=b"hello", headers=token)).is_success

        assert (await sign_in(client, username="alice", password=PASSWORD)).status_code == 200
        package = await client.get(package_url)
        artifact = await client.get(artifact_url)
        create = {"name": "by-cookie"}
        mlflow_refused = await client.post("/api/2.0/mlflow/experiments/create", json=create)
        artifact_refused = await client.put(artifact_url, content=b"changed")
        package_refused = await client.put(package_url + "2", content=b"other")
        mlflow_done = await client.post(
            "/api/2.0/mlflow/experiments/create",
            json=create,
            headers={"X-CSRF-Token": client.cookies["modelreg_csrf"]},
        )

    assert (package.status_code, package.content) == (200, b"0123456789")
    assert (artifact.status_code, artifact.content) == (200, b"hello")
    for refused in (mlflow_refused, artifact_refused):
        assert refused.status_code == 403
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert package_refused.status_code == 403
    assert package_refused.json()["error"] == "forbidden"
    assert mlflow_done.status_code == 200, mlflow_done.text


# --- CORS ------------------------------------------------------------------------------


async def test_an_allowed_origin_may_call_graphql_with_a_token_and_others_get_no_cors_headers(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    preflight_headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with app_client(tmp_path, database_url, cors_origins=(ORIGIN,)) as client:
        preflight = await client.options(
            "/graphql", headers={"Origin": ORIGIN, **preflight_headers}
        )
        allowed = await client.post(
            "/graphql",
            json={"query": VIEWER},
            headers={"Origin": ORIGIN, **bearer(registry.token)},
        )
        other_preflight = await client.options(
            "/graphql", headers={"Origin": "https://evil.example.com", **preflight_headers}
        )
        other = await client.post(
            "/graphql",
            json={"query": VIEWER},
            headers={"Origin": "https://evil.example.com", **bearer(registry.token)},
        )
        other_path = await client.get("/healthz", headers={"Origin": ORIGIN})

    def cors(response: httpx.Response) -> dict[str, str]:
        return {
            name: value
            for name, value in response.headers.items()
            if name.startswith("access-control-")
        }

    assert preflight.status_code == 200
    assert cors(preflight)["access-control-allow-origin"] == ORIGIN
    assert cors(preflight)["access-control-allow-methods"] == "GET, POST"
    assert cors(preflight)["access-control-allow-headers"] == (
        "Accept, Accept-Language, Authorization, Content-Language, Content-Type"
    )
    assert "access-control-allow-credentials" not in cors(preflight)
    assert allowed.status_code == 200
    assert allowed.json()["data"]["viewer"]["user"]["username"] == "alice"
    assert cors(allowed) == {"access-control-allow-origin": ORIGIN}
    assert other_preflight.status_code == 405
    assert cors(other_preflight) == {}
    assert other.status_code == 200
    assert cors(other) == {}
    assert cors(other_path) == {}


def test_cors_origins_are_read_comma_separated_and_must_be_origins() -> None:
    assert Settings(cors_origins="https://a.example.com, http://localhost:3000").cors_origins == (
        "https://a.example.com",
        "http://localhost:3000",
    )
    assert Settings().cors_origins == ()
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origins="https://a.example.com/path")


# --- the command line ------------------------------------------------------------------


def modelreg(
    database_url: str, *arguments: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `modelreg`, its stdin a pipe (not a terminal) holding `stdin`."""
    return subprocess.run(
        [MODELREG, *arguments],
        env=clean_environment(MODELREG_DATABASE_URL=database_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


async def password_signs_in(database: Database, username: str, password: str) -> bool:
    async with database.session() as session:
        try:
            await sessions.sign_in_with_password(
                session, username=username, password=password, lifetime=dt.timedelta(hours=1)
            )
        except UnauthenticatedError:
            return False
    return True


async def test_user_commands_read_the_password_from_stdin_and_end_sessions(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        created = modelreg(
            database_url, "user", "create", "carol", "--password", stdin=PASSWORD + "\n"
        )
        too_short = modelreg(database_url, "user", "create", "dave", "--password", stdin="short\n")
        signs_in = await password_signs_in(database, "carol", PASSWORD)
        changed = modelreg(
            database_url, "user", "set-password", "carol", stdin="another passphrase"
        )
        old_signs_in = await password_signs_in(database, "carol", PASSWORD)
        new_signs_in = await password_signs_in(database, "carol", "another passphrase")
        revoked = modelreg(database_url, "user", "sessions", "revoke", "carol")
        async with database.session(read_only=True) as session:
            usernames = list(await session.scalars(sa.select(User.username).order_by(User.id)))
            hashes = list(await session.scalars(sa.select(User.password_hash)))
        remaining = await session_count(database)
    finally:
        await database.dispose()

    assert (created.returncode, created.stdout) == (0, "created user 'carol'\n"), created.stderr
    assert (too_short.returncode, too_short.stderr) == (
        2,
        "modelreg: a password needs at least 8 characters\n",
    )
    assert "dave" not in usernames
    assert signs_in
    assert changed.returncode == 0, changed.stderr
    assert (old_signs_in, new_signs_in) == (False, True)
    assert (revoked.returncode, revoked.stdout) == (0, "ended 1 browser session(s) of 'carol'\n")
    assert remaining == 0
    assert all(h is None or h.startswith("$argon2id$") for h in hashes)
