"""Real, throwaway servers for the test session and the benchmark: PostgreSQL, Redis and
S3 (moto), and the process plumbing any server under test needs.

Each server listens on a free loopback port (`free_port`), logs into the given work
directory, runs in a session of its own (`spawn`: Ctrl-C in the terminal reaches the test
or benchmark runner only, whose teardown then stops the servers in order) and is stopped
through its process id when its context manager exits, even if the body raised
(`running`, `stop_process`).

    with postgres_server(tmp) as database_url, redis_server(tmp) as redis_url:
        ...

`RedisServer` can also be stopped and started again on the same port in the middle of a
test, to check what happens while Redis is down. The benchmark (`bench.servers`) starts its
own servers with the same `spawn`, `running` and `answers`, and its PostgreSQL with
`postgres_cluster`.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "LOOPBACK",
    "POSTGRES_USER",
    "PostgresCluster",
    "RedisServer",
    "answers",
    "free_port",
    "log_tail",
    "postgres_cluster",
    "postgres_server",
    "redis_server",
    "running",
    "s3_server",
    "spawn",
    "stop_process",
    "wait_until_ready",
]

LOOPBACK = "127.0.0.1"
POSTGRES_USER = "postgres"
"""The superuser of the throwaway cluster (trust authentication, no password)."""

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes ---------------------------------------------------------------------------


def spawn(
    command: list[str],
    log_path: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    account: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` in a session (and process group) of its own, with its output appended
    to `log_path` and `env` as its whole environment (None: ours).

    With `account`, the process runs as that user (used to run PostgreSQL as `postgres`
    when running as root).
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )


def stop_process(
    process: subprocess.Popen[bytes],
    stop_signal: signal.Signals = signal.SIGTERM,
    *,
    group: bool = False,
    timeout: float = STOP_TIMEOUT,
) -> None:
    """Send `stop_signal` to the process and wait; kill it if it hangs (with its process
    group when it leads one, which also reaches children such as PostgreSQL backends).

    With `group` (a process `spawn` started), the signal goes to its whole process group,
    and whatever is left of that group once the process is gone is killed: workers of a
    server whose parent exited first.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, stop_signal)
            else:
                process.send_signal(stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(process.pid) == process.pid:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            process.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def log_tail(log_path: Path, lines: int = 30) -> str:
    """The last `lines` of a server's log, introduced by its path, for error messages."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return f"(no log at {log_path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {log_path}:\n{tail}"


def wait_until_ready(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll `is_ready` until it holds; fail with the log tail if the server dies or hangs."""
    deadline = time.monotonic() + timeout
    while not is_ready():
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {process.returncode} before accepting "
                f"connections; {log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} did not accept connections within {timeout:.0f}s; {log_tail(log_path)}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
    stop_signal: signal.Signals = signal.SIGTERM,
    *,
    group: bool = False,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[None]:
    """Wait for a started server, and stop it however the body (or the wait) ends
    (`stop_process` with `stop_signal` and `group`)."""
    try:
        wait_until_ready(name, process, log_path, is_ready, start_timeout)
        yield
    finally:
        stop_process(process, stop_signal, group=group, timeout=stop_timeout)


# Talk to local servers directly even when an HTTP proxy is configured.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, *, status: int | None = None) -> bool:
    """Whether `url` answers over HTTP: with `status` if given, else with anything (even an
    error status means it is serving)."""
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return status is None or response.status == status
    except urllib.error.HTTPError as error:
        return status is None or error.code == status
    except OSError:
        return False


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found on PATH; on Debian install the '{package}' package")
    return path


# --- PostgreSQL --------------------------------------------------------------------------

_POSTGRES_PACKAGE_HINT = "on Debian install the 'postgresql' package"


def _version_key(directory: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, so that 15 sorts above 9.6."""
    return tuple(int(part) for part in directory.parent.name.split(".") if part.isdigit())


def _postgres_bindir() -> Path:
    """The directory holding `initdb` and `postgres`: from PATH, else the newest Debian one."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    installed = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    candidates += sorted(installed, key=_version_key, reverse=True)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "pg_isready").is_file():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres, pg_isready) not found on PATH "
        f"or under /usr/lib/postgresql/*/bin; {_POSTGRES_PACKAGE_HINT}"
    )


def _postgres_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root.

    PostgreSQL refuses to run as root, so as root both initdb and the server run as the
    `postgres` system user that the Debian package creates.
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "PostgreSQL refuses to run as root and there is no 'postgres' system user "
            f"to run it as; {_POSTGRES_PACKAGE_HINT} (it creates that user)"
        ) from None


def _cluster_directory(workdir: Path, account: pwd.struct_passwd | None) -> Path:
    """An empty directory for the cluster's data and socket, writable by `account`."""
    if account is None:
        return Path(tempfile.mkdtemp(prefix="postgres-", dir=workdir))
    # pytest's temporary directories are private to root (mode 0700), so the postgres
    # user could not reach a cluster inside them: use the world-traversable system
    # temporary directory instead, with a directory owned by that user.
    directory = Path(tempfile.mkdtemp(prefix="modelreg-postgres-"))
    os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster: its port on the loopback interface and its postmaster."""

    port: int
    pid: int

    def url(self, scheme: str = "postgresql") -> str:
        """The superuser's URL of the `postgres` database (``postgresql+asyncpg`` for
        SQLAlchemy with asyncpg)."""
        return f"{scheme}://{POSTGRES_USER}@{LOOPBACK}:{self.port}/postgres"


@contextlib.contextmanager
def postgres_cluster(
    workdir: Path,
    *,
    bindir: Path | None = None,
    durable: bool = False,
    max_connections: int = 200,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[PostgresCluster]:
    """A fresh PostgreSQL cluster from `bindir` (default: found on PATH or the newest
    Debian one), removed when the context exits.

    Its superuser `postgres` has trust authentication, so it can create databases. Unless
    `durable`, the settings trade durability for speed (no fsync), which suits throwaway
    test data; a benchmark wants PostgreSQL's defaults.
    """
    if bindir is None:
        bindir = _postgres_bindir()
    elif not (bindir / "postgres").is_file():
        raise RuntimeError(f"PostgreSQL binaries not found in {bindir}")
    account = _postgres_account()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "postgres.log"
    cluster = _cluster_directory(workdir, account)
    try:
        data = cluster / "data"
        initdb = [
            str(bindir / "initdb"),
            f"--pgdata={data}",
            f"--username={POSTGRES_USER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            *([] if durable else ["--no-sync"]),
        ]
        initdb_log = workdir / "initdb.log"
        if spawn(initdb, initdb_log, cwd=cluster, account=account).wait() != 0:
            raise RuntimeError(f"initdb failed; {log_tail(initdb_log)}")

        port = free_port()
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(port),
            "unix_socket_directories": str(cluster),
            "max_connections": str(max_connections),
        }
        if not durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        server = [str(bindir / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            server += ["-c", f"{name}={value}"]
        is_ready = [
            str(bindir / "pg_isready"),
            *("--host", LOOPBACK, "--port", str(port)),
            *("--username", POSTGRES_USER, "--dbname", "postgres", "--quiet"),
        ]

        def accepts_connections() -> bool:
            return subprocess.run(is_ready, check=False, timeout=10).returncode == 0

        process = spawn(server, log_path, cwd=cluster, account=account)
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients left
        # connected, unlike SIGTERM's "smart" shutdown; the postmaster stops its backends.
        with running(
            "PostgreSQL",
            process,
            log_path,
            accepts_connections,
            signal.SIGINT,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        ):
            yield PostgresCluster(port=port, pid=process.pid)
    finally:
        shutil.rmtree(cluster, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A fresh, fast (not durable) PostgreSQL cluster; yields its URL for SQLAlchemy with
    asyncpg, `postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres`."""
    with postgres_cluster(workdir) as cluster:
        yield cluster.url("postgresql+asyncpg")


# --- Redis -------------------------------------------------------------------------------


def _redis_answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server without persistence on one loopback port, for the whole session.

    `stop()` and `start()` may be called any number of times; the server always comes
    back on the same port, so clients holding `url` reconnect to it.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = _require("redis-server", "redis-server")
        self.workdir = workdir
        self.port = free_port() if port is None else port
        self.log_path = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the running server, None while stopped."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.is_running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            *("--bind", LOOPBACK, "--port", str(self.port)),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(self.workdir), "--daemonize", "no"),
        ]
        process = spawn(command, self.log_path, cwd=self.workdir)
        self._process = process
        try:
            wait_until_ready(
                "redis-server", process, self.log_path, lambda: _redis_answers_ping(self.port)
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (no-op if stopped) and wait until its process is gone."""
        if self._process is not None:
            stop_process(self._process, signal.SIGTERM)
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server without persistence; yields `redis://127.0.0.1:PORT/0`."""
    with RedisServer(workdir) as server:
        yield server.url


# --- S3 (moto) ---------------------------------------------------------------------------


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """moto in server mode, an S3 lookalike; yields its endpoint `http://127.0.0.1:PORT`.

    It accepts any credentials and region, and keeps everything in memory.
    """
    if importlib.util.find_spec("moto") is None:
        raise RuntimeError("moto is not installed; install the project's 'test' extra")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "moto.log"
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]

    def is_serving() -> bool:
        return answers(endpoint)

    process = spawn(command, log_path, cwd=workdir)
    with running("moto server", process, log_path, is_serving, signal.SIGTERM):
        yield endpoint
