"""A PostgreSQL restart under load: a live `modelreg serve` answers 503 in each surface's
convention while the database is away (never a 500, never a dropped connection), serves
again by itself once it is back, and loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app import migrations
from tests.live_server import LiveServer, live_server
from tests.services import postgres_server

# How long the database stays down: long enough for every client to meet it.
OUTAGE_SECONDS = 2.0
CLIENTS = 4
# Bounds each wait; the test finishes long before it unless something is broken.
TIMEOUT = 60.0


class PostgresCluster:
    """The cluster of `postgres_server`, stopped and started again in place: the
    command that started it is in its data directory (postmaster.opts), and it runs
    as the owner of that directory."""

    def __init__(self, url: str, data_directory: Path) -> None:
        self.url = url
        self.data_directory = data_directory
        self.command = shlex.split((data_directory / "postmaster.opts").read_text())
        self._restarted: subprocess.Popen[bytes] | None = None

    @classmethod
    async def of(cls, url: str) -> PostgresCluster:
        connection = await _connect(url)
        try:
            data_directory = await connection.fetchval("SHOW data_directory")
        finally:
            await connection.close()
        return cls(url, Path(data_directory))

    async def stop(self) -> None:
        """A fast shutdown: PostgreSQL ends every session and stops accepting any."""
        pid_file = self.data_directory / "postmaster.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        deadline = time.monotonic() + TIMEOUT
        while pid_file.exists():
            assert time.monotonic() < deadline, "PostgreSQL did not stop"
            await asyncio.sleep(0.05)

    async def start(self) -> None:
        self._restarted = self._spawn()
        deadline = time.monotonic() + TIMEOUT
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await (await _connect(self.url)).close()
                return
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            await asyncio.sleep(0.05)

    def _spawn(self) -> subprocess.Popen[bytes]:
        owner = pwd.getpwuid(self.data_directory.stat().st_uid)
        as_owner = os.geteuid() != owner.pw_uid
        return subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=owner.pw_uid if as_owner else None,
            group=owner.pw_gid if as_owner else None,
            extra_groups=[] if as_owner else None,
        )

    def stop_restarted(self) -> None:
        """Stop the server `start` started (postgres_server stops only the first one)."""
        if self._restarted is not None and self._restarted.poll() is None:
            self._restarted.send_signal(signal.SIGINT)
            self._restarted.wait(timeout=TIMEOUT)


async def _connect(url: str) -> asyncpg.Connection:
    parts = make_url(url)
    return await asyncpg.connect(
        host=parts.host, port=parts.port, user=parts.username, database=parts.database
    )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own (the session's stays up), migrated."""
    with postgres_server(tmp_path / "postgres") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        restartable = await PostgresCluster.of(url)
        try:
            yield restartable
        finally:
            restartable.stop_restarted()


@pytest.fixture
def server(cluster: PostgresCluster, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path, cluster.url) as running:
        yield running


@dataclass
class Load:
    """What the clients saw: each answer's status, the bodies of the refusals, the
    transport errors, and the steps whose points the server acknowledged."""

    statuses: Counter[int] = field(default_factory=Counter)
    refusals: list[dict[str, str]] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    acknowledged: set[int] = field(default_factory=set)


async def log_metrics_until(
    client: httpx.AsyncClient, run_id: str, steps: Iterator[int], load: Load, stop: asyncio.Event
) -> None:
    """Log one metric point per request, as an MLflow client does, until `stop`."""
    while not stop.is_set():
        step = next(steps)
        try:
            response = await client.post(
                "/api/2.0/mlflow/runs/log-metric",
                json={"run_id": run_id, "key": "loss", "value": step, "timestamp": 1, "step": step},
            )
        except httpx.TransportError as error:
            load.transport_errors.append(f"{type(error).__name__}: {error}")
            continue
        load.statuses[response.status_code] += 1
        if response.status_code == 200:
            load.acknowledged.add(step)
        else:
            load.refusals.append(response.json())


async def test_postgres_restart_under_load_answers_503_then_serves_again_losing_nothing(
    cluster: PostgresCluster, server: LiveServer
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=TIMEOUT) as client,
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as anonymous,
    ):
        created = await client.post("/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
        assert created.status_code == 200, created.text
        run_id = created.json()["run"]["info"]["run_id"]

        load, stop = Load(), asyncio.Event()
        steps = iter(range(1_000_000))
        clients = [
            asyncio.create_task(log_metrics_until(client, run_id, steps, load, stop))
            for _ in range(CLIENTS)
        ]
        try:
            deadline = time.monotonic() + TIMEOUT
            while load.statuses[200] < 20:
                assert time.monotonic() < deadline, f"the clients got nowhere: {load.statuses}"
                await asyncio.sleep(0.05)
            await cluster.stop()
            await asyncio.sleep(OUTAGE_SECONDS)
            during = await answers_of_each_surface(client, anonymous)
            served_before_restart = load.statuses[200]
            await cluster.start()
            deadline = time.monotonic() + TIMEOUT
            while load.statuses[200] < served_before_restart + 20:
                assert time.monotonic() < deadline, f"no recovery: {load.statuses}"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*clients)

        assert load.transport_errors == []
        assert set(load.statuses) == {200, 503}, load.statuses
        assert {refusal["error_code"] for refusal in load.refusals} == {"TEMPORARILY_UNAVAILABLE"}
        assert during == {
            "mlflow": (503, "TEMPORARILY_UNAVAILABLE"),
            "graphql": (503, "SERVICE_UNAVAILABLE"),
            "graphql without a database for the caller": (503, "SERVICE_UNAVAILABLE"),
            "package API": (503, "service_unavailable"),
        }
        assert await answers_of_each_surface(client, anonymous) == {
            "mlflow": (200, None),
            "graphql": (200, None),
            "graphql without a database for the caller": (200, None),
            "package API": (404, "not_found"),
        }

        history = await client.get(
            "/api/2.0/mlflow/metrics/get-history",
            params={"run_id": run_id, "metric_key": "loss", "max_results": 25000},
        )
        assert history.status_code == 200, history.text
        stored = {int(point["step"]) for point in history.json()["metrics"]}
        assert load.acknowledged <= stored, "an acknowledged point was lost"

    os.kill(server.pid, 0)  # the same server process served throughout
    assert server.log().count("Application startup complete") == 1


async def answers_of_each_surface(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> dict[str, tuple[int, str | None]]:
    """(status, error code) of a database read through each surface."""
    mlflow = await client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
    graphql = await client.post("/graphql", json={"query": "{ projects { __typename } }"})
    # Anonymous: finding the caller needs no database, the resolver does.
    without_caller = await anonymous.post("/graphql", json={"query": "{ projects { __typename } }"})
    package = await client.get("/api/v1/projects/default/packages/generic/absent/1.0.0/a.txt")

    def graphql_code(response: httpx.Response) -> str | None:
        errors = response.json().get("errors")
        return str(errors[0]["extensions"]["code"]) if errors else None

    return {
        "mlflow": (mlflow.status_code, mlflow.json().get("error_code")),
        "graphql": (graphql.status_code, graphql_code(graphql)),
        "graphql without a database for the caller": (
            without_caller.status_code,
            graphql_code(without_caller),
        ),
        "package API": (package.status_code, package.json().get("error")),
    }
