"""Shared fixtures: real PostgreSQL, Redis and S3 servers started for the session, and a
freshly migrated database per test on both SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from arq.connections import RedisSettings, create_pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app import migrations
from app.db import Database
from app.models import Project
from app.outbox import JobDispatcher
from app.services import auth, projects
from app.settings import Settings
from app.storage import ArtifactStore, create_artifact_store
from tests.live_server import LiveServer, copy_sqlite, live_server
from tests.services import RedisServer, postgres_server, s3_server
from workers.dispatch import create_dispatcher

if TYPE_CHECKING:
    from mlflow import MlflowClient

TEMPLATE_DATABASE = "modelreg_template"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server: MODELREG_TEST_POSTGRES_URL if set, else one started here."""
    if url := os.environ.get("MODELREG_TEST_POSTGRES_URL"):
        yield url
        return
    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server the test may stop and start again on the same port."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def redis_url(redis: RedisServer) -> str:
    """The test Redis, running and emptied for this test."""
    redis.start()
    client = await create_pool(RedisSettings.from_dsn(redis.url))
    try:
        await client.flushdb()
    finally:
        await client.aclose(close_connection_pool=True)
    return redis.url


@pytest.fixture(scope="session")
def s3_endpoint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("s3")) as url:
        yield url


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    await asyncio.to_thread(migrations.upgrade, f"sqlite+aiosqlite:///{path}")
    return path


async def _admin_connection(postgres_url: str) -> asyncpg.Connection:
    url = make_url(postgres_url)
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )


@pytest.fixture(scope="session")
async def postgres_template(postgres_url: str) -> str:
    """A PostgreSQL database migrated to head once; each test gets a copy of it."""
    connection = await _admin_connection(postgres_url)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE}")
        await connection.execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
    finally:
        await connection.close()
    url = make_url(postgres_url).set(database=TEMPLATE_DATABASE).render_as_string(False)
    await asyncio.to_thread(migrations.upgrade, url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_url: str,
    postgres_template: str,
) -> str:
    """The URL of a fresh database at the newest migration, on the test's backend."""
    if backend == "sqlite":
        return copy_sqlite(sqlite_template, tmp_path)
    return await copy_postgres_template(postgres_url)


async def copy_postgres_template(postgres_url: str) -> str:
    """A new PostgreSQL database copied from the migrated template."""
    name = f"modelreg_test_{os.getpid()}_{next(_database_numbers)}"
    connection = await _admin_connection(postgres_url)
    try:
        await connection.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
    finally:
        await connection.close()
    return make_url(postgres_url).set(database=name).render_as_string(False)


def module_server(**settings: str) -> Callable[..., AsyncIterator[LiveServer]]:
    """A module-scoped fixture: a `modelreg serve` process on a fresh database of each
    backend, with `settings` (MODELREG_* names in lower case), for the tests of one
    module. A module that needs its own settings names it `server`:
    ``server = module_server(secret_key="...")``."""

    @pytest.fixture(scope="module", params=["sqlite", "postgresql"])
    async def server(
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        sqlite_template: Path,
        postgres_url: str,
        postgres_template: str,
    ) -> AsyncIterator[LiveServer]:
        workdir = tmp_path_factory.mktemp("server")
        if request.param == "sqlite":
            database_url = copy_sqlite(sqlite_template, workdir)
        else:
            database_url = await copy_postgres_template(postgres_url)
        with live_server(workdir, database_url, **settings) as running:
            yield running

    return server


server = module_server()


@pytest.fixture
def client(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    """The real `mlflow` client, as the administrator of the module's live server (the
    fluent API too); a test's active run is ended after it."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    # A 5xx would be retried for minutes; no answer of ours may be one.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield mlflow.MlflowClient(server.url)
    if mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """One session whose transaction commits at the end of the test."""
    async with database.session() as session:
        yield session


@pytest.fixture
async def project(session: AsyncSession) -> Project:
    return await projects.get_default_project(session)


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    """Each test starts with no cached token verdicts from another test's database."""
    auth.forget_cached_tokens()


# --- Jobs: the fixtures below use the `settings` fixture each job test module defines. ---


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ArtifactStore]:
    """The API's started artifact store for the module's `settings`: what the test writes
    and the job runners clean."""
    artifacts = create_artifact_store(settings)
    await artifacts.start()
    try:
        yield artifacts
    finally:
        await artifacts.close()


@pytest.fixture
async def dispatcher(settings: Settings, database: Database) -> AsyncIterator[JobDispatcher]:
    """The API side of job dispatch: pushes what `database` sessions commit (to Redis when
    the module's settings name one, else to the in-process runner)."""
    created = await create_dispatcher(settings, database)
    await created.start()
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def default_project(database: Database) -> Project:
    """The default project, read in a short transaction: the `project` fixture holds its
    session's transaction open for the whole test, and on SQLite that write lock would
    block every job runner, since runners use sessions of their own."""
    async with database.session(read_only=True) as session:
        return await projects.get_default_project(session)
