"""The ops surface of an in-process app: readiness probes, request ids and request logs."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app import migrations
from app.main import create_app
from app.observability import JsonFormatter
from tests.clients import app_settings, serving
from tests.services import RedisServer, free_port


def _dead_postgres_url() -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/modelreg"


def _dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


class _Lines(logging.Handler):
    """Keeps each record formatted as it is emitted (the request id is a context
    variable, so the line must be formatted inside the request)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def request_log() -> Iterator[_Lines]:
    logger = logging.getLogger("modelreg.request")
    handler = _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --- readiness -----------------------------------------------------------------------


async def test_readyz_is_200_with_database_ok_on_a_migrated_database(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(app_settings(tmp_path, database_url)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


async def test_healthz_is_200_on_both_backends(database_url: str, tmp_path: Path) -> None:
    async with serving(app_settings(tmp_path, database_url)) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_with_database_unreachable_when_postgres_port_is_closed(
    tmp_path: Path,
) -> None:
    async with serving(app_settings(tmp_path, _dead_postgres_url())) as client:
        response = await client.get("/readyz")
        health = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unreachable", "storage": "ok"},
    }
    # Liveness does not depend on the database: the process itself is fine.
    assert health.status_code == 200


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_readyz_turns_503_when_the_database_goes_away_while_serving(
    database_url: str, postgres_url: str, tmp_path: Path
) -> None:
    async with serving(app_settings(tmp_path, database_url)) as client:
        before = await client.get("/readyz")

        url = make_url(postgres_url)
        connection = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database="postgres"
        )
        try:
            database = make_url(database_url).database
            await connection.execute(f"DROP DATABASE {database} WITH (FORCE)")
        finally:
            await connection.close()

        after = await client.get("/readyz")

    assert before.status_code == 200, before.text
    assert after.status_code == 503
    assert after.json() == {
        "status": "unavailable",
        "checks": {"database": "unreachable", "storage": "ok"},
    }


async def test_readyz_is_503_with_redis_unreachable_when_redis_port_is_closed(
    database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(tmp_path, database_url, redis_url=_dead_redis_url())
    async with serving(settings) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unreachable", "storage": "ok"},
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_readyz_is_200_with_redis_ok_when_redis_answers(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    redis.start()
    settings = app_settings(tmp_path, database_url, redis_url=redis.url)
    async with serving(settings) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "storage": "ok"},
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_readyz_is_503_when_the_schema_falls_behind_head(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(app_settings(tmp_path, database_url)) as client:
        before = await client.get("/readyz")
        await asyncio.to_thread(migrations.downgrade, database_url, "base")
        after = await client.get("/readyz")

    assert before.status_code == 200, before.text
    assert after.status_code == 503
    assert after.json() == {
        "status": "unavailable",
        "checks": {"database": "schema is behind; run `modelreg migrate`", "storage": "ok"},
    }


# --- request ids and the request log ---------------------------------------------------


@pytest.fixture
async def client(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """An app on a migrated SQLite database (the request id does not depend on the backend)."""
    database_path = tmp_path / "modelreg.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), database_path)
    async with serving(app_settings(tmp_path, f"sqlite+aiosqlite:///{database_path}")) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/no/such/route", 404),
        ("POST", "/graphql", 200),
    ],
)
async def test_every_response_carries_a_generated_request_id(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    body = {"query": "{ version }"} if path == "/graphql" else None
    first = await client.request(method, path, json=body)
    second = await client.request(method, path, json=body)

    assert first.status_code == status
    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/no/such/route"])
async def test_response_echoes_the_callers_x_request_id(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"X-Request-ID": "trace-4f2a"})

    assert response.headers.get_list("x-request-id") == ["trace-4f2a"]


async def test_request_log_line_carries_method_path_status_and_request_id(
    client: httpx.AsyncClient, request_log: _Lines
) -> None:
    await client.get("/healthz", headers={"X-Request-ID": "trace-given"})
    response = await client.get("/no/such/route")
    generated = response.headers["x-request-id"]

    entries = [entry for entry in request_log.entries() if entry["message"] == "request"]

    assert len(entries) == 2
    given_line, generated_line = entries
    assert given_line["logger"] == "modelreg.request"
    assert given_line["level"] == "info"
    assert {k: given_line[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "GET",
        "path": "/healthz",
        "status": 200,
        "request_id": "trace-given",
    }
    assert isinstance(given_line["duration_ms"], int | float)
    assert {k: generated_line[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "GET",
        "path": "/no/such/route",
        "status": 404,
        "request_id": generated,
    }


async def test_an_unhandled_error_response_still_carries_the_request_id(
    tmp_path: Path, request_log: _Lines
) -> None:
    # Without its lifespan the app has no runtime, so /readyz raises: this stands in for
    # any handler that fails with an unexpected exception.
    app = create_app(app_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://modelreg.test") as client:
        response = await client.get("/readyz", headers={"X-Request-ID": "trace-crash"})

    assert response.status_code == 500
    assert response.headers.get("x-request-id") == "trace-crash"
    [line] = [entry for entry in request_log.entries() if entry["message"] == "request"]
    assert (line["status"], line["request_id"]) == (500, "trace-crash")
