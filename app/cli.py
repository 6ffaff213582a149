"""The `modelreg` command: serve | worker | migrate | export-schema, and the
administration of users, tokens, projects and members.

Administration commands act as the operator (full rights, no user) through the same
services as the API, and each change is written to the audit trail. Lists print a table
for people, or JSON with --json for scripts. Every failure a user can fix is one line on
stderr, `modelreg: <cause> (<setting>)`, with the exit codes of `app.preflight`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import enum
import gc
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import preflight
from app.errors import DomainError
from app.observability import configure_logging
from app.preflight import CommandError
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from app.db import Database

logger = logging.getLogger("modelreg")
T = TypeVar("T")

ROLES = ("guest", "reporter", "developer", "maintainer", "owner")


# --- running against the database ------------------------------------------------------


async def _checked_database(settings: Settings, *, require_head: bool) -> Database:
    """The configured database once it answered (and, with `require_head`, has the
    newest schema); the caller disposes of it."""
    from app.db import Database

    database = Database(settings.resolved_database_url)
    try:
        await preflight.check_database(database, settings, require_head=require_head)
    except BaseException:
        await database.dispose()
        raise
    return database


def _prepare_database(settings: Settings, *, migrate: bool, check_storage: bool) -> None:
    """Check that the database answers (at the newest schema unless `migrate`) and, with
    `check_storage`, the artifact store; then upgrade the schema if `migrate`. Every check
    comes before the first change, so a failed start leaves nothing half-done."""
    if migrate:
        preflight.prepare_database_directory(settings)
    else:
        preflight.require_database_file(settings)

    async def check() -> None:
        await (await _checked_database(settings, require_head=not migrate)).dispose()
        if check_storage:
            await preflight.check_artifact_store(settings)

    asyncio.run(check())
    if migrate:
        from app import migrations

        migrations.upgrade(settings.resolved_database_url)
        logger.info("database schema is at head")


def _in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the configured database, once it
    is known to exist, to answer and to have the newest schema."""
    preflight.require_database_file(settings)

    async def run() -> T:
        database = await _checked_database(settings, require_head=True)
        try:
            async with database.session() as session:
                return await work(session)
        except DomainError as error:
            raise CommandError(error.message) from None
        finally:
            await database.dispose()

    return asyncio.run(run())


def _bootstrap_admin(settings: Settings) -> None:
    from app.services import users

    try:
        bootstrap = _in_session(
            settings,
            lambda session: users.bootstrap_admin(session, token=settings.bootstrap_admin_token),
        )
    except IntegrityError:
        return  # another process starting at the same moment created the administrator
    if bootstrap.secret is not None:
        _notice(
            f"created the administrator '{bootstrap.username}'; "
            f"its access token (shown once): {bootstrap.secret}"
        )
    elif not bootstrap.created:
        _notice(
            f"the administrator is '{bootstrap.username}'; to get a new token for it, run "
            f"`modelreg token create --user {bootstrap.username}`"
        )


def _notice(message: str) -> None:
    """A line for the person starting the server, apart from the JSON log."""
    print(f"modelreg: {message}", file=sys.stderr, flush=True)


# --- serving ---------------------------------------------------------------------------


def serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if args.workers > 1 and (settings.uses_sqlite or not settings.redis_url):
        raise CommandError(
            f"--workers {args.workers} needs PostgreSQL (MODELREG_DATABASE_URL) and Redis "
            "(MODELREG_REDIS_URL): SQLite has one writer, and subscriptions reach the "
            "other processes through Redis; leave --workers at 1 otherwise"
        )
    # Taken first: a busy port must stop the start before the administrator is created.
    listening = preflight.bind(args.host, args.port)
    try:
        _prepare_database(settings, migrate=args.migrate, check_storage=True)
        _bootstrap_admin(settings)
        logger.info("serving on http://%s:%d", args.host, args.port)
        if args.workers > 1:
            # Each process builds the app from the same environment (uvicorn's factory);
            # the supervisor restarts a process that dies.
            config = uvicorn.Config(
                f"{__name__}:served_app",
                factory=True,
                host=args.host,
                port=args.port,
                log_config=None,
                workers=args.workers,
            )
            # Listening before the processes start: connections wait for the first one
            # ready instead of being refused.
            listening.listen(config.backlog)
            Multiprocess(config, sockets=[listening]).run()
            return
        server = uvicorn.Server(
            uvicorn.Config(served_app(settings), host=args.host, port=args.port, log_config=None)
        )
        server.run(sockets=[listening])
        started = server.started
    finally:
        listening.close()
    if not started:
        raise SystemExit(preflight.EXIT_UNEXPECTED)


def served_app(settings: Settings | None = None) -> Starlette:
    """The app `serve` runs, with the dispatcher of the workers' package; each process of
    `serve --workers N` calls it with no argument and reads the environment itself."""
    from app.main import create_app
    from workers.dispatch import create_dispatcher

    if settings is None:  # a process of its own, started afresh: it logs as `serve` does
        settings = load_settings()
        configure_logging(settings.log_level)
    app = create_app(settings, dispatcher_factory=create_dispatcher)
    _settle_garbage_collection()
    return app


def _settle_garbage_collection() -> None:
    """What a serving process has built by now (modules, mappers, the GraphQL schema:
    most of its objects) lives as long as the process, so the collector stops walking it
    on each full collection, and runs its youngest generation every 10,000 allocations
    instead of 700. A request that builds many objects (a GraphQL page of candidates:
    tens of thousands) had spent a third of its time in collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def worker(settings: Settings, args: argparse.Namespace) -> None:
    from app.metrics import serve_worker_metrics
    from workers import health
    from workers.settings import run_worker

    if args.check:
        report = health.check(settings)
        print(report.message, file=sys.stdout if report.healthy else sys.stderr)
        raise SystemExit(0 if report.healthy else 1)
    # Without MODELREG_REDIS_URL, run_worker itself says that no worker is needed.
    if settings.redis_url:
        asyncio.run(preflight.check_redis(settings.redis_url))
        _prepare_database(settings, migrate=False, check_storage=True)
    try:
        metrics_server = serve_worker_metrics(settings)
    except OSError as error:
        raise preflight.UnavailableError(
            f"cannot serve worker metrics on {settings.worker_metrics_host}:"
            f"{settings.worker_metrics_port} (MODELREG_WORKER_METRICS_PORT): {error.strerror}"
        ) from None
    try:
        run_worker(settings)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()


def migrate(settings: Settings, args: argparse.Namespace) -> None:
    _prepare_database(settings, migrate=True, check_storage=False)


def export_schema(settings: Settings, args: argparse.Namespace) -> None:
    from app.graphql.schema import schema

    Path(args.output).write_text(schema.as_str() + "\n")


# --- users -----------------------------------------------------------------------------


def _read_password() -> str:
    """A password typed twice at a terminal, else the first line of stdin; never an
    argument, which other users of the host could read in the process list."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CommandError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def user_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import sessions, users
    from app.services.actor import OPERATOR

    password = _read_password() if args.password else None

    async def work(session: AsyncSession) -> None:
        user = await users.create_user(
            session,
            username=args.username,
            name=args.name,
            email=args.email,
            is_admin=args.admin,
            actor=OPERATOR,
        )
        if password is not None:
            await sessions.set_password(session, user=user, password=password, actor=OPERATOR)

    _in_session(settings, work)
    print(f"created user '{args.username}'")


def user_set_password(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import sessions, users
    from app.services.actor import OPERATOR

    password = _read_password()

    async def work(session: AsyncSession) -> None:
        user = await users.get_user(session, username=args.username)
        await sessions.set_password(session, user=user, password=password, actor=OPERATOR)

    _in_session(settings, work)
    print(f"set the password of '{args.username}': their browser sessions ended")


def user_sessions_revoke(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import sessions, users

    async def work(session: AsyncSession) -> int:
        user = await users.get_user(session, username=args.username)
        return await sessions.end_user_sessions(session, user=user)

    ended = _in_session(settings, work)
    print(f"ended {ended} browser session(s) of '{args.username}'")


def user_list(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "username": user.username,
                "name": user.name,
                "email": user.email,
                "admin": user.is_admin,
                "blocked": not user.is_active,
                "created_at": user.created_at,
            }
            for user in await users.list_users(session, actor=OPERATOR)
        ]

    _print_records(_in_session(settings, work), as_json=args.json)


def _user_blocking(blocked: bool) -> Callable[[Settings, argparse.Namespace], None]:
    def command(settings: Settings, args: argparse.Namespace) -> None:
        from app.services import users
        from app.services.actor import OPERATOR

        async def work(session: AsyncSession) -> bool:
            user = await users.get_user(session, username=args.username)
            return await users.set_blocked(session, user=user, blocked=blocked, actor=OPERATOR)

        changed = _in_session(settings, work)
        state = "blocked" if blocked else "unblocked"
        if not changed:
            print(f"'{args.username}' is already {state}")
        elif blocked:
            print(f"blocked '{args.username}': their tokens no longer authenticate")
        else:
            print(f"unblocked '{args.username}': their tokens authenticate again")

    return command


# --- tokens ----------------------------------------------------------------------------


def token_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.db import utcnow
    from app.services import auth, users
    from app.services.actor import OPERATOR

    if args.expires_in is not None and args.expires_in < 1:
        raise CommandError("--expires-in takes a number of days, at least 1")
    expires_at = (
        utcnow() + dt.timedelta(days=args.expires_in) if args.expires_in is not None else None
    )

    async def work(session: AsyncSession) -> str:
        user = await users.get_user(session, username=args.user)
        _, secret = await auth.create_token(
            session,
            user=user,
            name=args.name,
            scopes=args.scopes.split(","),
            expires_at=expires_at,
            actor=OPERATOR,
        )
        return secret

    print(_in_session(settings, work))


def token_list(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import auth, users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        user = await users.get_user(session, username=args.user) if args.user else None
        tokens = await auth.list_tokens(session, user=user, actor=OPERATOR)
        owners = await users.usernames(session, user_ids={token.user_id for token in tokens})
        return [
            {
                "id": token.id,
                "name": token.name,
                "user": owners[token.user_id],
                "scopes": token.scopes,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "last_used_at": token.last_used_at,
                "revoked_at": token.revoked_at,
            }
            for token in tokens
        ]

    _print_records(_in_session(settings, work), as_json=args.json)


def token_revoke(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import auth
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> bool:
        token = await auth.get_token(session, token_id=args.id)
        was_active = token.revoked_at is None
        await auth.revoke_token(session, token=token, actor=OPERATOR)
        return was_active

    if _in_session(settings, work):
        print(f"revoked token {args.id}")
    else:
        print(f"token {args.id} was already revoked")


# --- projects and members --------------------------------------------------------------


def project_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.models import Visibility
    from app.services import projects, users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> None:
        owner = await users.get_user(session, username=args.owner) if args.owner else None
        await projects.create_project(
            session,
            path=args.path,
            name=args.name,
            visibility=Visibility(args.visibility),
            owner=owner,
            actor=OPERATOR,
        )

    _in_session(settings, work)
    print(f"created project '{args.path}'")


def project_list(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import projects
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "path": project.path,
                "name": project.name,
                "visibility": project.visibility,
                "created_at": project.created_at,
            }
            for project in await projects.list_projects(session, actor=OPERATOR)
        ]

    _print_records(_in_session(settings, work), as_json=args.json)


def member_add(settings: Settings, args: argparse.Namespace) -> None:
    from app.models import Role
    from app.services import projects, users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> None:
        project = await projects.get_project(session, path=args.project)
        user = await users.get_user(session, username=args.user)
        await projects.set_member(
            session, project=project, user=user, role=Role[args.role.upper()], actor=OPERATOR
        )

    _in_session(settings, work)
    print(f"'{args.user}' is now {args.role} of '{args.project}'")


def member_list(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import projects
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        project = await projects.find_project(session, actor=OPERATOR, path=args.project)
        return [
            {"user": user.username, "name": user.name, "role": role}
            for user, role in await projects.list_members(session, project=project)
        ]

    _print_records(_in_session(settings, work), as_json=args.json)


def member_remove(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import projects, users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> None:
        project = await projects.get_project(session, path=args.project)
        user = await users.get_user(session, username=args.user)
        await projects.remove_member(session, project=project, user=user, actor=OPERATOR)

    _in_session(settings, work)
    print(f"removed '{args.user}' from '{args.project}'")


# --- moving in ---------------------------------------------------------------------------


def _names(text: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _since(text: str) -> int:
    """A time as epoch milliseconds: ISO 8601 (a date or a date and time, UTC unless
    told), or a number of milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is no ISO 8601 date or time, nor epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def import_mlflow(settings: Settings, args: argparse.Namespace) -> None:
    from app.importing.command import ImportRequest, import_mlflow
    from app.importing.runner import ImportOptions

    preflight.require_database_file(settings)
    request = ImportRequest(
        source_url=args.source,
        token=args.token or os.environ.get("MLFLOW_TRACKING_TOKEN"),
        project_path=args.project,
        options=ImportOptions(
            experiments=args.experiments,
            models=args.models,
            since_ms=args.since,
            dry_run=args.dry_run,
        ),
        verify=args.verify,
        mode="json" if args.json else "quiet" if args.quiet else "bars",
    )
    try:
        exit_code = asyncio.run(import_mlflow(settings, request))
    except DomainError as error:
        raise CommandError(error.message) from None
    raise SystemExit(exit_code)


# --- output ----------------------------------------------------------------------------


def _print_records(records: list[dict[str, Any]], *, as_json: bool) -> None:
    """Records as a JSON array (dates in ISO 8601), or as a table with a header line."""
    if as_json:
        print(json.dumps([{k: _json_value(v) for k, v in r.items()} for r in records], indent=2))
        return
    if not records:
        print("(none)")
        return
    headings = [key.removesuffix("_at").replace("_", " ").upper() for key in records[0]]
    rows = [headings, *([_cell(value) for value in record.values()] for record in records)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(headings))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, int) else value.value
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(_json_value(value))


# --- the command line ------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of processes") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"{count} is not a number of processes (1-64)")
    return count


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array (for scripts) instead of a table"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelreg",
        description=__doc__,
        epilog=preflight.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser(
        "serve",
        help="run the API server",
        epilog=preflight.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve_parser.add_argument(
        "--port", type=_port, default=8080, help="TCP port to listen on (default: %(default)s)"
    )
    serve_parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not upgrade the database schema on start (when `modelreg migrate` runs apart)",
    )
    serve_parser.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="API processes sharing the port (default: %(default)s); more than one needs "
        "PostgreSQL and Redis",
    )
    serve_parser.set_defaults(handler=serve)

    worker_parser = commands.add_parser("worker", help="run a background worker (needs Redis)")
    worker_parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if this host's worker recorded its health in Redis in the last 11 s, "
        "else 1 (a container health check)",
    )
    worker_parser.set_defaults(handler=worker)
    commands.add_parser("migrate", help="upgrade the database schema to head").set_defaults(
        handler=migrate
    )
    schema_parser = commands.add_parser("export-schema", help="write the GraphQL schema")
    schema_parser.add_argument(
        "--output", default="schema.graphql", help="file to write (default: %(default)s)"
    )
    schema_parser.set_defaults(handler=export_schema)

    user = commands.add_parser("user", help="manage users").add_subparsers(required=True)
    user_create_parser = user.add_parser("create", help="create a user")
    user_create_parser.add_argument("username", help="letters, digits, '_', '.', '-'")
    user_create_parser.add_argument("--name", help="full name, shown to other users")
    user_create_parser.add_argument("--email", help="e-mail address")
    user_create_parser.add_argument(
        "--admin", action="store_true", help="make the user an administrator"
    )
    user_create_parser.add_argument(
        "--password",
        action="store_true",
        help="give the user a password for signing in with a browser: typed at the prompt, "
        "or the first line of stdin",
    )
    user_create_parser.set_defaults(handler=user_create)
    user_password_parser = user.add_parser(
        "set-password",
        help="set a user's password (prompted, or the first line of stdin); "
        "their browser sessions end",
    )
    user_password_parser.add_argument("username", help="the user")
    user_password_parser.set_defaults(handler=user_set_password)
    user_sessions = user.add_parser(
        "sessions", help="manage a user's browser sessions"
    ).add_subparsers(required=True)
    user_sessions_revoke_parser = user_sessions.add_parser(
        "revoke", help="end every browser session of a user (within 10 s)"
    )
    user_sessions_revoke_parser.add_argument("username", help="the user")
    user_sessions_revoke_parser.set_defaults(handler=user_sessions_revoke)
    user_list_parser = user.add_parser("list", help="list users, blocked ones included")
    _json_option(user_list_parser)
    user_list_parser.set_defaults(handler=user_list)
    user_block_parser = user.add_parser(
        "block", help="block a user: their tokens stop authenticating (within 10 s)"
    )
    user_block_parser.add_argument("username", help="the user to block")
    user_block_parser.set_defaults(handler=_user_blocking(True))
    user_unblock_parser = user.add_parser(
        "unblock", help="unblock a user: their unrevoked tokens work again"
    )
    user_unblock_parser.add_argument("username", help="the user to unblock")
    user_unblock_parser.set_defaults(handler=_user_blocking(False))

    token = commands.add_parser("token", help="manage access tokens").add_subparsers(required=True)
    token_create_parser = token.add_parser("create", help="create a token and print it once")
    token_create_parser.add_argument("--user", required=True, help="username of its owner")
    token_create_parser.add_argument(
        "--name", default="cli", help="what the token is for (default: %(default)s)"
    )
    token_create_parser.add_argument(
        "--scopes",
        default="api",
        help="comma-separated: api (read and write), read_api (read only); default: api",
    )
    token_create_parser.add_argument(
        "--expires-in", type=int, metavar="DAYS", help="expire after DAYS days (default: never)"
    )
    token_create_parser.set_defaults(handler=token_create)
    token_list_parser = token.add_parser(
        "list", help="list tokens (never their secrets), revoked and expired ones included"
    )
    token_list_parser.add_argument("--user", help="only the tokens of this username")
    _json_option(token_list_parser)
    token_list_parser.set_defaults(handler=token_list)
    token_revoke_parser = token.add_parser("revoke", help="revoke a token for good")
    token_revoke_parser.add_argument("id", type=int, help="the token's id, from `token list`")
    token_revoke_parser.set_defaults(handler=token_revoke)

    project = commands.add_parser("project", help="manage projects").add_subparsers(required=True)
    project_create_parser = project.add_parser("create", help="create a project")
    project_create_parser.add_argument(
        "path", help="lowercase letters, digits, '_', '.', '-'; used in URLs"
    )
    project_create_parser.add_argument("--name", help="display name (default: the path)")
    project_create_parser.add_argument(
        "--visibility",
        choices=["private", "public"],
        default="private",
        help="public projects are readable by anyone (default: %(default)s)",
    )
    project_create_parser.add_argument("--owner", help="username of its first owner")
    project_create_parser.set_defaults(handler=project_create)
    project_list_parser = project.add_parser("list", help="list every project")
    _json_option(project_list_parser)
    project_list_parser.set_defaults(handler=project_list)

    import_parser = commands.add_parser(
        "import-mlflow",
        help="copy an MLflow tracking server's experiments, runs, artifacts and registry "
        "into a project (resumable; run again to continue)",
        epilog=preflight.EXIT_CODES + "\n  4  --verify found differences",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_parser.add_argument(
        "--from", dest="source", required=True, help="the MLflow tracking URI (http[s]://...)"
    )
    import_parser.add_argument(
        "--token",
        help="bearer token for the MLflow server (default: MLFLOW_TRACKING_TOKEN, which other "
        "users of the host cannot read in the process list)",
    )
    import_parser.add_argument("--project", required=True, help="the destination project's path")
    import_parser.add_argument(
        "--experiments", type=_names, help="comma-separated experiment names or ids (default: all)"
    )
    import_parser.add_argument(
        "--models", type=_names, help="comma-separated registered model names (default: all)"
    )
    import_parser.add_argument(
        "--since",
        type=_since,
        help="only runs started at or after this time (ISO 8601, or epoch milliseconds)",
    )
    import_parser.add_argument(
        "--dry-run", action="store_true", help="count what would be written; write nothing"
    )
    import_parser.add_argument(
        "--verify",
        action="store_true",
        help="then compare counts, metric histories and artifact checksums with the source",
    )
    output = import_parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only warnings and differences")
    output.add_argument(
        "--json", action="store_true", help="print JSON lines (progress, warnings, summary)"
    )
    import_parser.set_defaults(handler=import_mlflow)

    member = commands.add_parser("member", help="manage project members").add_subparsers(
        required=True
    )
    member_add_parser = member.add_parser("add", help="add a member or change their role")
    member_add_parser.add_argument("project", help="the project's path")
    member_add_parser.add_argument("user", help="the member's username")
    member_add_parser.add_argument("role", choices=ROLES, help="the role to give")
    member_add_parser.set_defaults(handler=member_add)
    member_list_parser = member.add_parser("list", help="list a project's members and roles")
    member_list_parser.add_argument("project", help="the project's path")
    _json_option(member_list_parser)
    member_list_parser.set_defaults(handler=member_list)
    member_remove_parser = member.add_parser(
        "remove", help="remove a member (a project keeps at least one owner)"
    )
    member_remove_parser.add_argument("project", help="the project's path")
    member_remove_parser.add_argument("user", help="the member's username")
    member_remove_parser.set_defaults(handler=member_remove)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        args.handler(settings, args)
    except SettingsError as error:
        print(f"modelreg: {error}", file=sys.stderr)
        raise SystemExit(preflight.EXIT_USAGE) from None
    except CommandError as error:
        print(f"modelreg: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
