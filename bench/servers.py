"""Start and stop the servers under test, each on a free loopback port.

Every server runs in a session of its own and is stopped through its process id (its
process group, so that worker children go too) when its context manager exits. Spawning,
waiting for readiness, stopping and the throwaway PostgreSQL cluster are the test suite's
(`tests.services`); this module adds the servers compared, their venvs and the RSS and CPU
sampling.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import (
    LOOPBACK,
    answers,
    free_port,
    log_tail,
    postgres_cluster,
    running,
    spawn,
)

REPO = Path(__file__).resolve().parent.parent
REPO_VENV = REPO / ".venv"
ADMIN_TOKEN = "bench-admin-token-0123456789"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0

MLFLOW_REQUIREMENT = "mlflow>=3.17,<3.18"
FASTTRACKML_REQUIREMENT = "fasttrackml==0.6.0"
POSTGRES_BINDIR = Path("/usr/lib/postgresql/15/bin")

# Keep every process on this machine: no usage reporting from MLflow.
QUIET_ENVIRONMENT = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

FEATURES_ALL = frozenset({"registry", "artifacts"})


@dataclass(frozen=True)
class Server:
    """A running server: where it listens, its process and what it supports."""

    key: str
    url: str
    pid: int
    version: str
    log_path: Path
    token: str | None = None
    features: frozenset[str] = FEATURES_ALL
    details: dict[str, str] = field(default_factory=dict)


# --- processes ---------------------------------------------------------------------------


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODELREG_", "MLFLOW_", "VIRTUAL_ENV"))
    }
    return environment | QUIET_ENVIRONMENT | (extra or {})


def _spawn(
    command: list[str],
    log_path: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`spawn` with the benchmark's environment unless `env` is given."""
    return spawn(command, log_path, cwd=cwd, env=env if env is not None else _environment())


@contextlib.contextmanager
def _serving(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
) -> Iterator[None]:
    """Wait for a server, then stop its whole process group with SIGTERM however the body
    ends."""
    with running(
        name,
        process,
        log_path,
        is_ready,
        signal.SIGTERM,
        group=True,
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    ):
        yield


# --- virtual environments ----------------------------------------------------------------


def _base_python() -> str:
    return shutil.which("python3") or sys.executable


def ensure_venv(directory: Path, requirement: str, log_path: Path) -> Path:
    """A virtual environment with `requirement` installed; reused when already there.

    Returns its bin directory. A failed install raises with pip's last lines.
    """
    marker = directory / ".bench-requirement"
    bindir = directory / "bin"
    if marker.is_file() and marker.read_text() == requirement:
        return bindir
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        steps = [
            [_base_python(), "-m", "venv", str(directory)],
            [str(bindir / "python"), "-m", "pip", "install", "--upgrade", "pip"],
            [str(bindir / "python"), "-m", "pip", "install", requirement],
        ]
        for step in steps:
            log.write(f"$ {' '.join(step)}\n".encode())
            log.flush()
            result = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                raise RuntimeError(
                    f"installing '{requirement}' failed (exit {result.returncode}); "
                    f"{log_tail(log_path)}"
                )
    marker.write_text(requirement)
    return bindir


def _package_version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


# --- the servers -------------------------------------------------------------------------


@contextlib.contextmanager
def floor_server(workdir: Path) -> Iterator[Server]:
    """The do-nothing server (bench/floor.py) under the repository's uvicorn."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / "floor.log"
    command = [str(REPO_VENV / "bin/python"), "-m", "bench.floor", "--port", str(port)]
    process = _spawn(command, log_path, cwd=REPO)
    with _serving("floor", process, log_path, lambda: answers(f"{url}/health", status=200)):
        version = f"uvicorn {importlib.metadata.version('uvicorn')} (raw ASGI)"
        yield Server("floor", url, process.pid, version, log_path)


@contextlib.contextmanager
def mlflow_server(workdir: Path, venvs: Path, *, workers: int, jobs: bool) -> Iterator[Server]:
    """MLflow's tracking server on SQLite, proxying artifacts to a local directory.

    Unless `jobs`, without its background job runner (a supervisor and seven huey
    consumers that poll all the time: over half a core on an idle 2-core machine, and
    nothing the tracking workload uses).
    """
    bindir = ensure_venv(venvs / "mlflow", MLFLOW_REQUIREMENT, workdir / "mlflow-install.log")
    data = workdir / "mlflow-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / "mlflow.log"
    command = [
        str(bindir / "mlflow"),
        "server",
        *("--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}"),
        "--serve-artifacts",
        *("--artifacts-destination", str(data / "artifacts")),
        *("--host", LOOPBACK, "--port", str(port)),
        *("--workers", str(workers)),
    ]
    environment = _environment({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": str(jobs).lower()})
    process = _spawn(command, log_path, cwd=data, env=environment)
    with _serving("MLflow", process, log_path, lambda: answers(f"{url}/health", status=200)):
        version = _package_version(bindir / "python", "mlflow")
        details = {"backend": "sqlite", "workers": str(workers), "job_runner": str(jobs).lower()}
        yield Server("mlflow", url, process.pid, version, log_path, details=details)


@contextlib.contextmanager
def fasttrackml_server(workdir: Path, venvs: Path) -> Iterator[Server]:
    """FastTrackML (`fml server`) on SQLite. It has no model registry and no artifact
    proxy (clients write to its artifact root themselves), so those rows are skipped."""
    bindir = ensure_venv(
        venvs / "fasttrackml", FASTTRACKML_REQUIREMENT, workdir / "fasttrackml-install.log"
    )
    data = workdir / "fasttrackml-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / "fasttrackml.log"
    command = [
        str(bindir / "fml"),
        "server",
        *("--listen-address", f"{LOOPBACK}:{port}"),
        *("--database-uri", f"sqlite://{data / 'fasttrackml.db'}"),
        *("--default-artifact-root", str(data / "artifacts")),
    ]
    process = _spawn(command, log_path, cwd=data)
    with _serving("FastTrackML", process, log_path, lambda: answers(f"{url}/health", status=200)):
        version = subprocess.run(
            [str(bindir / "fml"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        yield Server(
            "fasttrackml",
            url,
            process.pid,
            version.removeprefix("FastTrackML version ") or "unknown",
            log_path,
            features=frozenset(),
            details={"backend": "sqlite"},
        )


def _modelreg_version() -> str:
    version = importlib.metadata.version("modelreg")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", ".", ":!bench"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{version} ({commit}{'+changes' if changed else ''})" if commit else version


@contextlib.contextmanager
def modelreg_server(
    workdir: Path,
    key: str,
    database_url: str | None,
    *,
    workers: int = 1,
    redis_url: str | None = None,
) -> Iterator[Server]:
    """`modelreg serve` from the repository's venv; embedded SQLite unless `database_url`;
    `workers` processes (more than one needs PostgreSQL and `redis_url`)."""
    data = workdir / f"{key}-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / f"{key}.log"
    settings = {
        "MODELREG_DATA_DIR": str(data),
        "MODELREG_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    if database_url:
        settings["MODELREG_DATABASE_URL"] = database_url
    if redis_url:
        settings["MODELREG_REDIS_URL"] = redis_url
    command = [
        str(REPO_VENV / "bin/modelreg"),
        "serve",
        *("--host", LOOPBACK, "--port", str(port), "--workers", str(workers)),
    ]
    process = _spawn(command, log_path, cwd=data, env=_environment(settings))
    with _serving(key, process, log_path, lambda: answers(f"{url}/readyz", status=200)):
        details = {"backend": "postgresql" if database_url else "sqlite", "workers": str(workers)}
        if database_url:
            details["database_url"] = database_url
        yield Server(
            key,
            url,
            process.pid,
            _modelreg_version(),
            log_path,
            token=ADMIN_TOKEN,
            features=FEATURES_ALL | {"graphql"},
            details=details,
        )


# --- PostgreSQL --------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    url: str
    version: str
    pid: int


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[Postgres]:
    """A throwaway PostgreSQL 15 cluster with its default (durable) settings."""
    with postgres_cluster(
        workdir,
        bindir=POSTGRES_BINDIR,
        durable=True,
        max_connections=100,
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    ) as cluster:
        version = subprocess.run(
            [str(POSTGRES_BINDIR / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        yield Postgres(cluster.url(), version, cluster.pid)


# --- memory and CPU ---------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    found = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += _children(current)
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc/<pid>/status."""
    total = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used by a process tree, including its children already waited for."""
    ticks = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine used (user and system, every core), from
    /proc/stat; interrupt and hypervisor steal time are left out."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(value) for value in fields[:3])
    return (user + nice + system) / CLOCK_TICKS


class ForeignLoad:
    """How many cores processes other than the given ones kept busy over a stretch."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.busy = machine_busy_seconds()
        self.mine = self._mine()

    def _mine(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.pids)

    def cores(self) -> float:
        elapsed = time.monotonic() - self.started
        other = (machine_busy_seconds() - self.busy) - (self._mine() - self.mine)
        return max(0.0, other / elapsed) if elapsed > 0 else 0.0
