"""The `modelreg` command as an operator runs it: a real process, a clean environment."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

import app.models  # noqa: F401  (registers every table on the metadata)
from app import migrations
from app.db import Base
from app.graphql.schema import schema
from tests.cli_support import MODELREG, clean_environment, run_modelreg
from tests.services import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _head_revision() -> str | None:
    return ScriptDirectory.from_config(migrations.alembic_config("sqlite://")).get_current_head()


def _log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Server:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    def log(self) -> str:
        return _log_tail(self.log_path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    """`modelreg serve` started in an empty directory with no MODELREG_* settings,
    once /healthz answers; stopped through its process id afterwards."""
    workdir = tmp_path / "embedded"
    workdir.mkdir()
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MODELREG, "serve", "--port", str(port)],
            cwd=workdir,
            env=clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=2) as client:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"modelreg serve exited with {process.returncode}:\n{server.log()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"modelreg serve did not answer within {START_TIMEOUT:.0f}s")
                time.sleep(0.1)
        yield server
    finally:
        _stop(process)


def test_serve_starts_embedded_with_a_sqlite_file_in_data_and_answers_the_probes(
    served: Server, tmp_path: Path
) -> None:
    database_path = tmp_path / "embedded" / "data" / "modelreg.db"
    assert database_path.is_file()
    assert (tmp_path / "embedded" / "data" / "artifacts").is_dir()

    with httpx.Client(base_url=served.base_url, trust_env=False, timeout=10) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}

    # The schema was migrated on start.
    with sqlite3.connect(database_path) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == _head_revision()


def test_serve_shuts_down_the_app_cleanly_on_sigterm(served: Server) -> None:
    returncode = _stop(served.process)

    # uvicorn finishes its shutdown, then re-raises the signal it caught.
    assert returncode in (0, -signal.SIGTERM), served.log()
    log = served.log_path.read_text()
    assert "Application shutdown complete." in log
    assert "Traceback" not in log


def test_serve_logs_one_json_line_per_request(served: Server) -> None:
    with httpx.Client(base_url=served.base_url, trust_env=False, timeout=10) as client:
        response = client.get("/healthz", headers={"X-Request-ID": "cli-probe-1"})
    assert response.headers["x-request-id"] == "cli-probe-1"
    _stop(served.process)

    lines = [line for line in served.log_path.read_text().splitlines() if "cli-probe-1" in line]
    assert len(lines) == 1, served.log()
    assert '"path": "/healthz"' in lines[0]
    assert '"status": 200' in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MODELREG_DATABASE_URL", "mysql://x"),
        ("MODELREG_REDIS_URL", "http://x"),
        ("MODELREG_ARTIFACTS", "ftp://x"),
        ("MODELREG_LOG_LEVEL", "LOUD"),
    ],
)
def test_serve_with_a_bad_setting_exits_with_one_line_naming_the_variable(
    variable: str, value: str, tmp_path: Path
) -> None:
    port = free_port()
    result = run_modelreg(
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        environment=clean_environment(**{variable: value}),
    )

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_migrate_creates_every_table_in_a_fresh_sqlite_file(tmp_path: Path) -> None:
    database_path = tmp_path / "fresh" / "registry.db"
    database_path.parent.mkdir()
    environment = clean_environment(MODELREG_DATABASE_URL=f"sqlite:///{database_path}")

    result = run_modelreg("migrate", cwd=tmp_path, environment=environment)

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database_path) as connection:
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    # sqlite_sequence is SQLite's own: it keeps the AUTOINCREMENT counters.
    assert tables == set(Base.metadata.tables) | {"alembic_version", "sqlite_sequence"}
    assert revision == _head_revision()


def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    database_path = tmp_path / "registry.db"
    environment = clean_environment(MODELREG_DATABASE_URL=f"sqlite:///{database_path}")

    first = run_modelreg("migrate", cwd=tmp_path, environment=environment)
    second = run_modelreg("migrate", cwd=tmp_path, environment=environment)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr


def test_export_schema_writes_the_served_graphql_schema(tmp_path: Path) -> None:
    output = tmp_path / "exported.graphql"

    result = run_modelreg(
        "export-schema", "--output", str(output), cwd=tmp_path, environment=clean_environment()
    )

    assert result.returncode == 0, result.stderr
    assert output.read_text() == schema.as_str() + "\n"


def test_committed_schema_graphql_is_up_to_date() -> None:
    path = REPOSITORY_ROOT / "schema.graphql"
    assert path.is_file(), "schema.graphql is missing; generate it with `modelreg export-schema`"
    committed = path.read_text()
    assert committed == schema.as_str() + "\n", (
        "schema.graphql is stale; regenerate it with `modelreg export-schema`"
    )
