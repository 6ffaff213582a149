"""A real `modelreg serve` process for tests that drive it like a user would (the
mlflow client, curl-like HTTP)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.services import free_port, stop_process

ADMIN_TOKEN = "test-admin-token-0123456789"
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class LiveServer:
    url: str
    database_url: str
    admin_token: str
    log_path: Path
    # The server process, for tests that watch its resources.
    pid: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ask(self, document: str, **variables: Any) -> dict[str, Any]:
        """The data of a GraphQL request of the administrator, which must succeed."""
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": document, "variables": variables},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@contextlib.contextmanager
def live_server(workdir: Path, database_url: str, **settings: str) -> Iterator[LiveServer]:
    """Serve on a free loopback port until the block ends; the schema must be at head."""
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MODELREG_")
    }
    environment |= {
        "MODELREG_DATABASE_URL": database_url,
        "MODELREG_DATA_DIR": str(workdir / "data"),
        "MODELREG_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
        **{f"MODELREG_{key.upper()}": value for key, value in settings.items()},
    }
    log_path = workdir / "server.log"
    command = Path(sys.executable).with_name("modelreg")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(command), "serve", "--port", str(port), "--no-migrate"],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(
        f"http://127.0.0.1:{port}", database_url, ADMIN_TOKEN, log_path, process.pid
    )
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        stop_process(process)


def _wait_until_healthy(server: LiveServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"modelreg serve exited early:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"modelreg serve did not become healthy:\n{server.log()}")


def copy_sqlite(template: Path, workdir: Path) -> str:
    path = workdir / "modelreg.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"
