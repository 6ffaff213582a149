"""`modelreg serve --workers N`: several API processes on one port, for PostgreSQL with
Redis, where the API keeps no state of its own. SQLite (one writer) refuses it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli_support import MODELREG, clean_environment, run_modelreg
from tests.conftest import copy_postgres_template
from tests.services import RedisServer, free_port

ADMIN_TOKEN = "workers-test-admin-token-0123456789"
START_TIMEOUT = 60.0
# A request may reach a process that is still starting (a replaced one, say).
REQUEST_TIMEOUT = 60.0


def children(pid: int) -> set[int]:
    """The API processes `pid` started (multiprocessing's spawned processes, not its
    resource tracker), as the kernel lists them."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    found = set()
    for child in text.split():
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if b"spawn_main" in command:
            found.add(int(child))
    return found


def wait_until(condition: str, check: Callable[[], bool], seconds: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {condition}")
        time.sleep(0.1)


def test_more_than_one_worker_on_sqlite_is_refused_in_one_line(tmp_path: Path) -> None:
    finished = run_modelreg(
        "serve", "--workers", "2", "--port", str(free_port()),
        cwd=tmp_path,
        environment=clean_environment(MODELREG_DATA_DIR=str(tmp_path / "data")),
    )  # fmt: skip
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert "--workers 2 needs PostgreSQL (MODELREG_DATABASE_URL) and Redis" in lines[0]
    # Refused before anything was created.
    assert not (tmp_path / "data").exists()


@pytest.fixture
async def postgres_database(postgres_url: str, postgres_template: str) -> str:
    return await copy_postgres_template(postgres_url)


@dataclass(frozen=True)
class Served:
    base_url: str
    supervisor: int


@pytest.fixture
def two_workers(tmp_path: Path, postgres_database: str, redis: RedisServer) -> Iterator[Served]:
    port = free_port()
    log_path = tmp_path / "serve.log"
    environment = clean_environment(
        MODELREG_DATA_DIR=str(tmp_path / "data"),
        MODELREG_DATABASE_URL=postgres_database,
        MODELREG_REDIS_URL=redis.url,
        MODELREG_BOOTSTRAP_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MODELREG, "serve", "--workers", "2", "--port", str(port)],
            cwd=tmp_path,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            f"two API processes run (log: {log_path})",
            lambda: len(children(process.pid)) == 2,
        )
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base_url, trust_env=False, timeout=START_TIMEOUT) as client:
            assert client.get("/readyz").status_code == 200
        yield Served(base_url, process.pid)
        # SIGTERM to the supervisor ends every process it started.
        started = children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()[-2000:]
        assert all(not Path(f"/proc/{pid}").exists() for pid in started)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def create_runs(base_url: str, count: int) -> list[str]:
    """`count` runs, each created over a connection of its own (any process may take it)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = []
    for _ in range(count):
        with httpx.Client(
            base_url=base_url, headers=headers, trust_env=False, timeout=REQUEST_TIMEOUT
        ) as client:
            answer = client.post(
                "/api/2.0/mlflow/runs/create", json={"experiment_id": "0", "start_time": 1}
            )
            assert answer.status_code == 200, answer.text
            created.append(answer.json()["run"]["info"]["run_id"])
    return created


def test_two_workers_serve_one_port_and_a_killed_one_is_replaced(two_workers: Served) -> None:
    base_url, supervisor = two_workers.base_url, two_workers.supervisor
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    run_ids = create_runs(base_url, 20)

    # A worker killed outright is replaced; the port keeps answering meanwhile.
    first, _ = sorted(children(supervisor))
    os.kill(first, signal.SIGKILL)
    wait_until(
        "the killed worker is replaced",
        lambda: first not in children(supervisor) and len(children(supervisor)) == 2,
    )
    run_ids += create_runs(base_url, 20)

    with httpx.Client(
        base_url=base_url, headers=headers, trust_env=False, timeout=REQUEST_TIMEOUT
    ) as client:
        found = client.post(
            "/api/2.0/mlflow/runs/search", json={"experiment_ids": ["0"], "max_results": 100}
        )
    assert found.status_code == 200, found.text
    assert sorted(run["info"]["run_id"] for run in found.json()["runs"]) == sorted(run_ids)
