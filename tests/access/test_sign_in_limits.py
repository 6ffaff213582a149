"""Sign-in limits on the in-process app: failed attempts are throttled per username and
per client address (in this process, or in Redis shared by every process), and password
checks beyond the per-process bound answer 503 instead of queueing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from app.db import Database
from app.errors import UnauthenticatedError
from app.main import create_app
from app.models import BrowserSession
from app.runtime import Runtime
from app.services import auth, sessions, sign_in_limits, users
from app.services.actor import OPERATOR
from app.services.sign_in_limits import SignInLimits, TooManyAttemptsError
from app.settings import Settings
from tests.clients import app_settings
from tests.services import RedisServer
from workers.dispatch import create_dispatcher

PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"
JSON = {"Accept": "application/json"}
WINDOW = 900


@pytest.fixture(autouse=True)
def _fresh_session_cache() -> None:
    sessions.forget_cached_sessions()


@pytest.fixture
async def token(database_url: str) -> AsyncIterator[str]:
    """Alice and carol with a password; alice's access token."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            alice = await users.create_user(session, username="alice")
            await sessions.set_password(session, user=alice, password=PASSWORD, actor=OPERATOR)
            carol = await users.create_user(session, username="carol")
            await sessions.set_password(session, user=carol, password=PASSWORD, actor=OPERATOR)
            _, secret = await auth.create_token(session, user=alice, name="t")
        yield secret
    finally:
        await database.dispose()


@pytest.fixture(params=["in-process", "redis"])
def counts_in(request: pytest.FixtureRequest) -> str | None:
    """Where attempts are counted: the Redis URL, or None for the process itself."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return None


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, database_url: str, redis_url: str | None = None, **settings: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The started app and an in-process client (whose peer address is 127.0.0.1)."""
    configured = app_settings(tmp_path, database_url, redis_url).model_copy(update=settings)
    app = create_app(configured, dispatcher_factory=create_dispatcher)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://modelreg.test"
        ) as client,
    ):
        yield app, client


async def sign_in(
    client: httpx.AsyncClient, *, forwarded_for: str | None = None, **fields: str
) -> httpx.Response:
    headers = dict(JSON)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.post("/sign-in", json=fields, headers=headers)


async def statuses(client: httpx.AsyncClient, times: int, **fields: str) -> list[int]:
    return [(await sign_in(client, **fields)).status_code for _ in range(times)]


async def session_count(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.session(read_only=True) as session:
            count = await session.scalar(sa.select(sa.func.count()).select_from(BrowserSession))
    finally:
        await database.dispose()
    return int(count or 0)


def retry_after(response: httpx.Response) -> int:
    return int(response.headers["retry-after"])


async def test_the_eleventh_wrong_password_answers_429_even_for_the_right_one(
    token: str, database_url: str, counts_in: str | None, tmp_path: Path
) -> None:
    async with running(tmp_path, database_url, counts_in) as (_, client):
        wrong = await statuses(client, 10, username="alice", password=WRONG)
        eleventh = await sign_in(client, username="alice", password=WRONG)
        right = await sign_in(client, username="alice", password=PASSWORD)
        form = await client.post("/sign-in", data={"username": "alice", "password": PASSWORD})
        other_user = await sign_in(client, username="carol", password=PASSWORD)
    sessions_opened = await session_count(database_url)

    assert wrong == [401] * 10
    assert eleventh.status_code == 429
    assert eleventh.json() == {
        "message": "too many failed sign-in attempts; retry later",
        "error": "too_many_attempts",
    }
    assert 0 < retry_after(eleventh) <= WINDOW
    assert (right.status_code, right.json()["error"]) == (429, "too_many_attempts")
    assert form.status_code == 429
    assert '<p role="alert">too many failed sign-in attempts; retry later</p>' in form.text
    assert 0 < retry_after(form) <= WINDOW
    assert other_user.status_code == 200
    # Only carol's sign-in opened a session: alice's right password was never checked.
    assert sessions_opened == 1


async def test_unknown_usernames_are_throttled_like_known_ones(
    token: str, database_url: str, tmp_path: Path
) -> None:
    async with running(tmp_path, database_url, sign_in_attempts=3) as (_, client):
        known = await statuses(client, 4, username="alice", password=WRONG)
        unknown = await statuses(client, 4, username="nobody", password=WRONG)

    assert known == unknown == [401, 401, 401, 429]


async def test_a_success_before_the_limit_resets_the_users_count(
    token: str, database_url: str, counts_in: str | None, tmp_path: Path
) -> None:
    async with running(tmp_path, database_url, counts_in, sign_in_attempts=3) as (_, client):
        before = await statuses(client, 2, username="alice", password=WRONG)
        success = await sign_in(client, username="alice", password=PASSWORD)
        after = await statuses(client, 4, username="alice", password=WRONG)

    assert before == [401, 401]
    assert success.status_code == 200
    assert after == [401, 401, 401, 429]


async def test_the_address_limit_counts_usernames_and_tokens_from_the_proxys_address(
    token: str, database_url: str, counts_in: str | None, tmp_path: Path
) -> None:
    attacker = "203.0.113.7"
    async with running(
        tmp_path,
        database_url,
        counts_in,
        trusted_proxy_headers=True,
        sign_in_address_attempts=3,
    ) as (_, client):
        # The values before the proxy's own are whatever the client sent: they change nothing.
        guesses = [
            await sign_in(
                client, forwarded_for=f"10.0.0.{n}, {attacker}", username=name, password=WRONG
            )
            for n, name in enumerate(["alice", "carol", "nobody"])
        ]
        by_password = await sign_in(
            client, forwarded_for=attacker, username="carol", password=PASSWORD
        )
        by_token = await sign_in(client, forwarded_for=attacker, token=token)
        elsewhere = await sign_in(
            client, forwarded_for="198.51.100.2", username="alice", password=PASSWORD
        )
        wrong_tokens = [
            (await sign_in(client, forwarded_for="198.51.100.9", token="not-a-token")).status_code
            for _ in range(4)
        ]
    async with running(tmp_path, database_url, counts_in, sign_in_address_attempts=1) as (
        _,
        client,
    ):
        # Without trusted proxy headers the peer counts, whatever the header says.
        peer = [
            await sign_in(client, forwarded_for=f"198.51.100.{n}", username="x", password=WRONG)
            for n in (3, 4)
        ]

    assert [response.status_code for response in guesses] == [401, 401, 401]
    assert by_password.status_code == by_token.status_code == 429
    assert elsewhere.status_code == 200
    assert wrong_tokens == [401, 401, 401, 429]
    assert [response.status_code for response in peer] == [401, 429]


async def test_two_apps_sharing_redis_see_one_count(
    token: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        running(tmp_path, database_url, redis_url, sign_in_attempts=3) as (_, first),
        running(tmp_path, database_url, redis_url, sign_in_attempts=3) as (_, second),
    ):
        on_first = await statuses(first, 2, username="alice", password=WRONG)
        on_second = await statuses(second, 2, username="alice", password=WRONG)
        back_on_first = await sign_in(first, username="alice", password=PASSWORD)

    assert on_first == [401, 401]
    assert on_second == [401, 429]
    assert back_on_first.status_code == 429


async def test_password_checks_beyond_the_bound_answer_503_and_count_nothing(
    token: str, database_url: str, tmp_path: Path
) -> None:
    async with running(
        tmp_path,
        database_url,
        password_checks_at_once=2,
        password_check_wait_seconds=0,
        sign_in_attempts=2,
    ) as (app, client):
        runtime: Runtime = app.state.runtime
        limits = runtime.sign_in_limits
        # Two password checks in progress take both of the process's slots.
        async with limits.password_check(), limits.password_check():
            busy = await asyncio.gather(
                sign_in(client, username="alice", password=PASSWORD),
                sign_in(client, username="alice", password=WRONG),
            )
            form = await client.post("/sign-in", data={"username": "alice", "password": WRONG})
            by_token = await sign_in(client, token=token)
        freed = await sign_in(client, username="alice", password=PASSWORD)

    assert [response.status_code for response in busy] == [503, 503]
    assert busy[0].json() == {
        "message": "the server is busy checking passwords; retry shortly",
        "error": "busy",
    }
    assert [retry_after(response) for response in busy] == [5, 5]
    assert (form.status_code, retry_after(form)) == (503, 5)
    # Tokens need no password check; the busy refusals counted no failed attempt.
    assert by_token.status_code == 200
    assert freed.status_code == 200


async def test_in_process_counts_are_bounded_and_ipv6_counts_by_network() -> None:
    limits = SignInLimits(Settings(sign_in_address_attempts=1), redis=None)

    async def fail(address: str) -> str:
        try:
            async with limits.attempt(address=address):
                raise UnauthenticatedError("wrong")
        except UnauthenticatedError:
            return "failed"
        except TooManyAttemptsError:
            return "refused"
        return "succeeded"

    first = [await fail("192.0.2.1"), await fail("192.0.2.1")]
    network = [await fail("2001:db8::1"), await fail("2001:db8::ffff:1")]
    for n in range(sign_in_limits.MAX_TRACKED_COUNTS):
        await fail(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    # The oldest count made room for the newest: at most MAX_TRACKED_COUNTS are kept.
    forgotten = await fail("192.0.2.1")

    assert first == ["failed", "refused"]
    assert network == ["failed", "refused"]
    assert forgotten == "failed"


async def test_attempts_are_counted_in_the_process_while_redis_is_down(
    token: str, database_url: str, redis: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    async with running(tmp_path, database_url, redis_url, sign_in_attempts=2) as (_, client):
        redis.stop()
        try:
            attempts = await statuses(client, 3, username="alice", password=WRONG)
        finally:
            redis.start()

    assert attempts == [401, 401, 429]
