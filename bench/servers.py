"""Start and stop the servers under test, each on a free loopback port.

Every server runs in a session of its own and is stopped through its process id (its
process group, so that worker children go too) when its context manager exits.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


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
    account: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env if env is not None else _environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )


def _stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals, *, group: bool) -> None:
    """Signal the process (or its process group) by id; kill the group if it hangs."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, stop_signal)
            else:
                process.send_signal(stop_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Children left behind by a parent that exited first share its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return f"(no log at {log_path})"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while not is_ready():
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {process.returncode} before it was ready; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} was not ready within {timeout:.0f}s; last lines of {log_path}:\n"
                f"{log_tail(log_path)}"
            )
        time.sleep(0.2)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, *, status: int | None = None) -> bool:
    """Whether `url` answers over HTTP (with `status`, if given)."""
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return status is None or response.status == status
    except urllib.error.HTTPError as error:
        return status is None or error.code == status
    except OSError:
        return False


@contextlib.contextmanager
def _serving(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
    *,
    stop_signal: signal.Signals = signal.SIGTERM,
    group: bool = True,
) -> Iterator[None]:
    try:
        _wait_until_ready(name, process, log_path, is_ready)
        yield
    finally:
        _stop(process, stop_signal, group=group)


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
                    f"last lines of {log_path}:\n{log_tail(log_path)}"
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
def modelreg_server(workdir: Path, key: str, database_url: str | None) -> Iterator[Server]:
    """`modelreg serve` from the repository's venv; embedded SQLite unless `database_url`."""
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
    command = [str(REPO_VENV / "bin/modelreg"), "serve", "--host", LOOPBACK, "--port", str(port)]
    process = _spawn(command, log_path, cwd=data, env=_environment(settings))
    with _serving(key, process, log_path, lambda: answers(f"{url}/readyz", status=200)):
        details = {"backend": "postgresql" if database_url else "sqlite"}
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


def _postgres_account() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, and there is no 'postgres' user to run it as"
        ) from None


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[Postgres]:
    """A throwaway PostgreSQL 15 cluster with its default (durable) settings."""
    bindir = POSTGRES_BINDIR
    if not (bindir / "postgres").is_file():
        raise RuntimeError(f"PostgreSQL binaries not found in {bindir}")
    account = _postgres_account()
    cluster = Path(tempfile.mkdtemp(prefix="modelreg-bench-postgres-"))
    if account is not None:
        os.chown(cluster, account.pw_uid, account.pw_gid)
    try:
        data = cluster / "data"
        initdb = [
            str(bindir / "initdb"),
            f"--pgdata={data}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        initdb_log = workdir / "initdb.log"
        if _spawn(initdb, initdb_log, cwd=cluster, account=account).wait() != 0:
            raise RuntimeError(f"initdb failed:\n{log_tail(initdb_log)}")
        port = free_port()
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(port),
            "unix_socket_directories": str(cluster),
            "max_connections": "100",
        }
        command = [str(bindir / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log_path = workdir / "postgres.log"
        is_ready = [
            str(bindir / "pg_isready"),
            *("--host", LOOPBACK, "--port", str(port), "--username", "postgres", "--quiet"),
        ]

        def accepts_connections() -> bool:
            return subprocess.run(is_ready, check=False, timeout=10).returncode == 0

        process = _spawn(command, log_path, cwd=cluster, account=account)
        # SIGINT is PostgreSQL's fast shutdown; it goes to the postmaster, which stops
        # its backends.
        with _serving(
            "PostgreSQL",
            process,
            log_path,
            accepts_connections,
            stop_signal=signal.SIGINT,
            group=False,
        ):
            version = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True
            ).stdout.strip()
            yield Postgres(
                f"postgresql://postgres@{LOOPBACK}:{port}/postgres", version, process.pid
            )
    finally:
        shutil.rmtree(cluster, ignore_errors=True)


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
