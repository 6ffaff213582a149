"""What `modelreg` checks before it starts work, so that a setting that cannot work stops
the command with one line naming the cause and the setting, never with a traceback.

A failed check raises CommandError when the command line or a setting must change, or
UnavailableError when a server the command needs does not answer now. Servers are named
by host and port only: a URL's password is never printed. Each check imports the client
it needs itself, so that `modelreg` starts quickly.

The exit codes of every `modelreg` command are EXIT_CODES, shown by `modelreg --help`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.settings import Settings

if TYPE_CHECKING:
    from app.db import Database

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CODES = """exit codes:
  0  done
  1  unexpected failure (a bug; the traceback is printed)
  2  a wrong argument or setting, or a request the registry refuses (one line)
  3  the database, Redis or S3 does not answer, or the port is taken (one line);
     the same command may succeed later"""

# A server that has not answered within this long counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 10.0
POSTGRES_DEFAULT_PORT = 5432
REDIS_DEFAULT_PORT = 6379
# PostgreSQL refusals a retry cannot fix: bad credentials (class 28), no such database.
_POSTGRES_REFUSALS = ("28", "3D000")


class CommandError(Exception):
    """A command failed in a way its user can fix; printed as one line."""

    exit_code = EXIT_USAGE


class UnavailableError(CommandError):
    """A server the command needs does not answer now; retrying later may succeed."""

    exit_code = EXIT_UNAVAILABLE


# --- the database ----------------------------------------------------------------------


def database_setting(settings: Settings) -> str:
    """The setting that decides where the database is."""
    return "MODELREG_DATABASE_URL" if settings.database_url else "MODELREG_DATA_DIR"


def sqlite_file(settings: Settings) -> Path | None:
    """The absolute path of the SQLite database file; None on PostgreSQL."""
    if not settings.uses_sqlite:
        return None
    return Path(settings.resolved_database_url.split(":///", 1)[1]).resolve()


def prepare_database_directory(settings: Settings) -> None:
    """Create the directory of the SQLite database if needed, and prove it writable
    (for the commands that may create the database: serve and migrate)."""
    path = sqlite_file(settings)
    if path is None:
        return
    directory, setting = path.parent, database_setting(settings)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(
            f"cannot create the data directory {directory} ({setting}): {_reason(error)}"
        ) from None
    try:
        # An unnamed file: nothing is left behind, whatever happens next.
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise CommandError(
            f"the data directory {directory} is not writable ({setting}): {_reason(error)}"
        ) from None


def require_database_file(settings: Settings) -> None:
    """Refuse to work on a SQLite database that does not exist yet (connecting would
    create an empty one, for example in the wrong working directory)."""
    path = sqlite_file(settings)
    if path is None or path.is_file():
        return
    if not settings.database_url and not settings.data_dir.is_absolute():
        raise CommandError(
            f"no database at {path}: MODELREG_DATA_DIR ({settings.data_dir}) is relative to "
            "the working directory; run the command where `modelreg serve` runs, or set "
            "MODELREG_DATA_DIR to an absolute path"
        )
    raise CommandError(
        f"no database at {path} ({database_setting(settings)}); run `modelreg migrate` first"
    )


def describe_database(settings: Settings) -> str:
    """The database as the messages name it: a file, or a server's host and port."""
    if (path := sqlite_file(settings)) is not None:
        return f"the SQLite database {path}"
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or POSTGRES_DEFAULT_PORT}"


async def check_database(database: Database, settings: Settings, *, require_head: bool) -> None:
    """Connect once; with `require_head`, also demand the newest schema."""
    from app import migrations

    where, setting = describe_database(settings), database_setting(settings)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            at_head = await migrations.is_at_head(database.engine)
    except Exception as error:
        failure = _database_failure(error, where, setting, sqlite=database.is_sqlite)
        if failure is None:
            raise
        raise failure from None
    if require_head and not at_head:
        raise CommandError(
            f"the schema of {where} is not at the newest migration ({setting}); "
            "run `modelreg migrate`"
        )


def _database_failure(
    error: Exception, where: str, setting: str, *, sqlite: bool
) -> CommandError | None:
    """What a failed first connection means, from the driver's error wherever it sits in
    the chain (SQLAlchemy and the engine's hooks wrap it); None for anything else."""
    import sqlalchemy as sa

    causes = list(_chain(error))
    if any(isinstance(cause, TimeoutError) for cause in causes):
        return UnavailableError(
            f"{where} did not answer within {CONNECT_TIMEOUT_SECONDS:.0f} s ({setting})"
        )
    if (unreachable := next((c for c in causes if isinstance(c, OSError)), None)) is not None:
        return UnavailableError(f"cannot reach {where} ({setting}): {_reason(unreachable)}")
    sqlstates = [str(code) for cause in causes if (code := getattr(cause, "sqlstate", None))]
    if not sqlstates and not any(isinstance(cause, sa.exc.DBAPIError) for cause in causes):
        return None
    # The innermost error is the driver's own, with the server's message.
    message = (str(causes[-1]).splitlines() or [type(causes[-1]).__name__])[0]
    if sqlite or (sqlstates and sqlstates[0].startswith(_POSTGRES_REFUSALS)):
        return CommandError(f"{where} refused the connection ({setting}): {message}")
    return UnavailableError(f"cannot use {where} ({setting}): {message}")


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# --- the artifact store ----------------------------------------------------------------


async def check_artifact_store(settings: Settings) -> None:
    """Start the configured store and run its probe (directory writable, or bucket and
    credentials accepted)."""
    from app.storage import ArtifactStoreUnavailableError, create_artifact_store

    if settings.s3_location is not None:
        setting = f"MODELREG_ARTIFACTS={settings.artifacts}"
        if settings.s3_endpoint_url:
            setting += f", MODELREG_S3_ENDPOINT_URL={settings.s3_endpoint_url}"
    else:
        setting = "MODELREG_ARTIFACTS" if settings.artifacts else "MODELREG_DATA_DIR"
    store = create_artifact_store(settings)
    try:
        await store.start()
        await store.probe()
    except ArtifactStoreUnavailableError as error:
        failure = UnavailableError if error.transient else CommandError
        raise failure(f"artifact storage: {error.message} ({setting})") from None
    except ValueError as error:
        # botocore refuses a malformed endpoint URL when the client is created.
        raise CommandError(f"artifact storage: {error} ({setting})") from None
    finally:
        await store.close()


# --- Redis -----------------------------------------------------------------------------


async def check_redis(url: str) -> None:
    """Connect to Redis and PING it."""
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, RedisError, ResponseError

    parts = urlsplit(url)
    if parts.scheme == "unix":
        where = f"Redis at {parts.path}"
    else:
        where = f"Redis at {parts.hostname or 'localhost'}:{parts.port or REDIS_DEFAULT_PORT}"
    client = Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            await client.ping()
    except TimeoutError:
        raise UnavailableError(
            f"{where} did not answer within {CONNECT_TIMEOUT_SECONDS:.0f} s (MODELREG_REDIS_URL)"
        ) from None
    except (AuthenticationError, ResponseError) as error:
        raise CommandError(
            f"{where} refused the connection (MODELREG_REDIS_URL): {error}"
        ) from None
    except (RedisError, OSError) as error:
        unreachable = next((c for c in _chain(error) if isinstance(c, OSError)), None)
        reason = _reason(unreachable) if unreachable is not None else str(error)
        raise UnavailableError(f"cannot reach {where} (MODELREG_REDIS_URL): {reason}") from None
    finally:
        await client.aclose()


# --- the listening socket --------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, taken before anything else starts, so that a busy
    port stops `serve` before it creates an administrator it could not serve."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise CommandError(f"cannot listen on host '{host}' (--host): {error.strerror}") from None
    listening = socket.socket(family, kind, protocol)
    # As uvicorn does: a restart may reuse the port while old connections linger.
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRINUSE:
            raise UnavailableError(
                f"port {port} on {host} is already in use; stop what holds it, "
                "or choose another port with --port"
            ) from None
        raise CommandError(
            f"cannot listen on {host}:{port} (--host, --port): {_reason(error)}"
        ) from None
    return listening


def _reason(error: OSError) -> str:
    """An OSError in a few words ("Connection refused"), without the errno noise."""
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name: {error.strerror}"
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__
