"""Prometheus `/metrics`: requests by route template and status, job gauges read from the
jobs table, database pool use, job durations (in the API and on a worker's own port),
the optional token, a scrape while the database is down, and `modelreg worker --check`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from arq.connections import RedisSettings, create_pool
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.metrics import UNMATCHED_ROUTE, pool_families
from app.models import JobStatus, Project
from app.services import jobs, models, projects
from app.services.actor import OPERATOR
from app.settings import Settings
from tests.clients import app_settings, bearer, serving
from tests.graphql_support import GraphQLApi, graphql_api
from tests.live_server import copy_sqlite
from tests.services import RedisServer, free_port
from workers.dispatch import create_dispatcher

MODELREG = str(Path(sys.executable).with_name("modelreg"))
# Bounds every wait for a worker; the tests finish long before it unless something broke.
TIMEOUT = 30.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels, read with prometheus-client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, token: str | None = None) -> Samples:
    response = await client.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def requests_of(samples: Samples, method: str, route: str, status: str) -> float | None:
    return sample(
        samples, "modelreg_http_requests_total", method=method, route=route, status=status
    )


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as running:
        yield running


# --- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_requests_are_counted_under_their_route_templates_and_statuses(
    api: GraphQLApi,
) -> None:
    client, token = api.client, api.admin_token
    mlflow = "/api/2.0/mlflow"
    created = await client.post(
        f"{mlflow}/experiments/create", json={"name": "metrics"}, headers=bearer(token)
    )
    lab = f"/projects/{api.project_path}/mlflow{mlflow}"
    found = await client.get(f"{lab}/experiments/get?experiment_id=0", headers=bearer(token))
    missing = await client.get(f"{lab}/experiments/get?experiment_id=999", headers=bearer(token))
    anonymous = await client.get(f"{lab}/experiments/get?experiment_id=0")
    await api.data("{ version }")
    package = await client.get(
        f"/api/v1/projects/{api.project_path}/packages/generic/weights/1.0.0/model.bin",
        headers=bearer(token),
    )
    unknown_endpoint = await client.get(f"{mlflow}/no-such-endpoint", headers=bearer(token))
    for path in ("/no/such/page", "/another/unknown/path-1234"):
        assert (await client.get(path)).status_code == 404
    assert (created.status_code, found.status_code, missing.status_code) == (200, 200, 404)
    assert (anonymous.status_code, package.status_code) == (401, 404)
    assert unknown_endpoint.status_code == 404

    samples = await scrape(client)

    mounted = "/projects/{project}/mlflow/api/2.0/mlflow/experiments/get"
    assert requests_of(samples, "POST", "/api/2.0/mlflow/experiments/create", "200") == 1
    assert requests_of(samples, "GET", mounted, "200") == 1
    assert requests_of(samples, "GET", mounted, "404") == 1
    assert requests_of(samples, "GET", mounted, "401") == 1
    assert requests_of(samples, "POST", "/graphql", "200") == 1
    generic = "/api/v1/projects/{project}/packages/generic/{name}/{version}/{path:path}"
    assert requests_of(samples, "GET", generic, "404") == 1
    assert requests_of(samples, "GET", "/api/2.0/{rest:path}", "404") == 1
    # Unknown paths fold into one series, whatever the path.
    assert requests_of(samples, "GET", UNMATCHED_ROUTE, "404") == 2
    # The latency histogram counts the same requests under the same labels.
    duration_count = "modelreg_http_request_duration_seconds_count"
    assert sample(samples, duration_count, method="GET", route=mounted, status="200") == 1
    assert sample(samples, duration_count, method="GET", route=UNMATCHED_ROUTE, status="404") == 2
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not any(route and ("/no/such" in route or api.project_path in route) for route in routes)


async def test_two_apps_in_one_process_keep_their_own_request_counts(
    tmp_path: Path, sqlite_template: Path
) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first_url = copy_sqlite(sqlite_template, first_dir)
    second_url = copy_sqlite(sqlite_template, second_dir)

    async with (
        serving(app_settings(first_dir, first_url)) as first,
        serving(app_settings(second_dir, second_url)) as second,
    ):
        for _ in range(3):
            await first.get("/healthz")
        await second.get("/healthz")
        first_samples = await scrape(first)
        second_samples = await scrape(second)

    assert requests_of(first_samples, "GET", "/healthz", "200") == 3
    assert requests_of(second_samples, "GET", "/healthz", "200") == 1


# --- jobs and the pool -----------------------------------------------------------------------


async def _create_jobs(database: Database) -> None:
    """Through the services: a model deletion (pending, due now), a purge due for two
    minutes, a migration due in an hour, and a finalization that succeeded."""
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="to delete", actor=OPERATOR
        )
        await models.destroy_model(session, model=model, actor=OPERATOR)
        await jobs.enqueue(
            session,
            kind=jobs.PURGE_DELETED_RUNS,
            payload={},
            run_after=utcnow() - dt.timedelta(minutes=2),
        )
        await jobs.enqueue(
            session,
            kind=jobs.MIGRATE_PACKAGE_TYPES,
            payload={},
            run_after=utcnow() + dt.timedelta(hours=1),
        )
        finished = await jobs.enqueue(session, kind=jobs.FINALIZE_UPLOAD, payload={})
    claimed = await jobs.claim(database, finished.id)
    assert claimed is not None
    assert await jobs.mark_succeeded(database, claimed)


async def test_job_gauges_count_jobs_by_kind_and_status_and_the_oldest_due_age(
    database: Database, database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    # With Redis configured and no worker running, the API runs no job itself.
    redis.start()
    async with serving(app_settings(tmp_path, database_url, redis_url=redis.url)) as client:
        before = await scrape(client)
        await _create_jobs(database)
        after = await scrape(client)

    assert sample(before, "modelreg_database_up") == 1
    assert sample(before, "modelreg_jobs", kind=jobs.DELETE_MODEL, status="pending") == 0
    assert sample(before, "modelreg_jobs_oldest_due_age_seconds") == 0

    assert sample(after, "modelreg_database_up") == 1
    expected = {
        (jobs.DELETE_MODEL, JobStatus.PENDING): 1,
        (jobs.PURGE_DELETED_RUNS, JobStatus.PENDING): 1,
        (jobs.MIGRATE_PACKAGE_TYPES, JobStatus.PENDING): 1,
        (jobs.FINALIZE_UPLOAD, JobStatus.SUCCEEDED): 1,
    }
    for kind in jobs.JOB_KINDS:
        for status in JobStatus:
            value = sample(after, "modelreg_jobs", kind=kind, status=status.value)
            assert value == expected.get((kind, status), 0), (kind, status)
    # The purge has been due for two minutes; the migration due in an hour does not count.
    oldest = sample(after, "modelreg_jobs_oldest_due_age_seconds")
    assert oldest is not None
    assert 120 <= oldest < 120 + 300


async def test_pool_gauges_follow_the_connections_the_engine_holds(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    def pool(database: Database) -> dict[str, float]:
        return {family.name: family.samples[0].value for family in pool_families(database)}

    async with database.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
        in_use = pool(database)
    idle = pool(database)

    assert in_use["modelreg_database_pool_size"] == 5
    assert in_use["modelreg_database_pool_checked_out"] == 1
    assert idle["modelreg_database_pool_checked_out"] == 0
    assert idle["modelreg_database_pool_checked_in"] == 1
    assert idle["modelreg_database_pool_overflow"] == 0

    async with serving(app_settings(tmp_path, database_url)) as client:
        samples = await scrape(client)
    assert sample(samples, "modelreg_database_pool_size") == 5
    assert sample(samples, "modelreg_database_pool_checked_out") is not None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_job_run_by_the_embedded_runner_is_timed_by_kind(api: GraphQLApi) -> None:
    kind = jobs.DELETE_MODEL
    before = await scrape(api.client)
    model = await api.data(
        f'mutation {{ modelCreate(input: {{project: "{api.project_path}", displayName: "gone"}})'
        " { ... on Model { id } } }"
    )
    started = await api.data(
        "mutation($id: ID!) { modelDelete(input: {id: $id}) { ... on JobStarted { job { id } } } }",
        {"id": model["modelCreate"]["id"]},
    )
    job = await api.wait_for_job(started["modelDelete"]["job"]["id"])
    after = await scrape(api.client)

    assert job["status"] == "SUCCEEDED", job
    count = "modelreg_job_duration_seconds_count"
    # The histogram belongs to the process (where jobs run), so count what this job added.
    assert (sample(after, count, kind=kind) or 0) - (sample(before, count, kind=kind) or 0) == 1


# --- the token ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_metrics_token_is_required_as_a_bearer_token_when_set(
    database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(tmp_path, database_url).model_copy(
        update={"metrics_token": "scrape-secret-0123456789"}
    )
    async with serving(settings) as client:
        without = await client.get("/metrics")
        wrong = await client.get("/metrics", headers=bearer("scrape-secret-wrong"))
        basic = await client.get("/metrics", headers={"Authorization": "Basic c2NyYXBlOng="})
        right = await client.get("/metrics", headers=bearer("scrape-secret-0123456789"))

    assert [without.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert without.headers["www-authenticate"].startswith("Bearer")
    assert "modelreg_http_requests_total" not in without.text
    assert right.status_code == 200
    assert sample(parse(right.text), "modelreg_database_up") == 1


def test_an_empty_metrics_token_leaves_metrics_open() -> None:
    assert Settings(metrics_token="").metrics_token is None


# --- the database down -----------------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/modelreg"


@pytest.mark.parametrize("down", ["refused", "silent"])
async def test_a_scrape_answers_with_database_up_0_when_the_database_is_down(
    down: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        if down == "refused":
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/modelreg"
        else:
            url = stack.enter_context(silent_server())
        async with serving(app_settings(tmp_path, url)) as client:
            await client.get("/healthz")
            samples = await scrape(client)

    assert sample(samples, "modelreg_database_up") == 0
    assert requests_of(samples, "GET", "/healthz", "200") == 1
    assert sample(samples, "modelreg_database_pool_size") == 5
    assert not any(name == "modelreg_jobs" for name, _ in samples)


# --- the worker: its health check and its metrics port -----------------------------------


def _environment(**settings: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    return environment | {f"MODELREG_{key.upper()}": value for key, value in settings.items()}


def start_worker(log_path: Path, **settings: str) -> subprocess.Popen[bytes]:
    """`modelreg worker` in a process of its own, logging to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [MODELREG, "worker"],
            env=_environment(**settings),
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def log_of(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


def check_worker(redis_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELREG, "worker", "--check"],
        env=_environment(redis_url=redis_url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


async def test_worker_check_fails_when_redis_is_unreachable() -> None:
    checked = await asyncio.to_thread(check_worker, f"redis://127.0.0.1:{free_port()}/0")

    assert checked.returncode == 1
    assert "cannot read the worker's health from Redis" in checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_worker_check_and_metrics_port_follow_a_running_worker(
    database: Database, database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    redis.start()
    queue = await create_pool(RedisSettings.from_dsn(redis.url))
    await queue.flushdb()
    await queue.aclose(close_connection_pool=True)
    token = "worker-scrape-secret-0123"
    port = free_port()
    settings = Settings(
        database_url=database_url, redis_url=redis.url, artifacts=str(tmp_path / "artifacts")
    )

    before = await asyncio.to_thread(check_worker, redis.url)
    log_path = tmp_path / "worker.log"
    worker = start_worker(
        log_path,
        database_url=database_url,
        redis_url=redis.url,
        artifacts=str(tmp_path / "artifacts"),
        worker_metrics_port=str(port),
        metrics_token=token,
    )
    try:
        running = await _wait_for_check(redis.url, worker, log_path)
        dispatcher = await create_dispatcher(settings, database)
        try:
            async with database.session() as session:
                job = await _destroy_a_model(session, await projects.get_default_project(session))
        finally:
            await dispatcher.close()
        await _wait_until_succeeded(database, job)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            refused = await client.get("/metrics")
            scraped = await client.get("/metrics", headers=bearer(token))
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, TIMEOUT)
    after = await asyncio.to_thread(check_worker, redis.url)

    assert before.returncode == 1, before
    assert "no worker on" in before.stderr
    assert running.returncode == 0, running
    assert "is healthy" in running.stdout
    assert refused.status_code == 401
    assert scraped.status_code == 200
    count = sample(
        parse(scraped.text), "modelreg_job_duration_seconds_count", kind=jobs.DELETE_MODEL
    )
    assert count == 1
    assert exit_code == 0, log_of(log_path)
    # A stopped worker removes its health record.
    assert after.returncode == 1, after


async def _destroy_a_model(session: AsyncSession, project: Project) -> int:
    model = await models.create_model(
        session, project=project, display_name="worker deletes", actor=OPERATOR
    )
    return (await models.destroy_model(session, model=model, actor=OPERATOR)).id


async def _wait_for_check(
    redis_url: str, worker: subprocess.Popen[bytes], log_path: Path
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        checked = await asyncio.to_thread(check_worker, redis_url)
        if checked.returncode == 0 or time.monotonic() > deadline:
            return checked
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited: {log_of(log_path)}")
        await asyncio.sleep(0.2)


async def _wait_until_succeeded(database: Database, job_id: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        async with database.session(read_only=True) as session:
            job = await jobs.get_job(session, job_id=job_id)
        if job.status is JobStatus.SUCCEEDED:
            return
        assert time.monotonic() < deadline, f"job {job_id} is {job.status.value}: {job.last_error}"
        await asyncio.sleep(0.05)
