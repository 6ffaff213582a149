"""The `modelreg` command: serve | worker | migrate | export-schema, and the
administration of users, tokens, projects and members."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DomainError
from app.observability import configure_logging
from app.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("modelreg")
T = TypeVar("T")


class CommandError(Exception):
    """A command failed in a way its user can fix; printed as one line."""


def _prepare(settings: Settings) -> None:
    """Create the data directory an embedded setup needs."""
    if settings.uses_sqlite:
        database_path = Path(settings.resolved_database_url.split(":///", 1)[1])
        database_path.parent.mkdir(parents=True, exist_ok=True)
    if settings.s3_location is None:
        settings.artifact_directory.mkdir(parents=True, exist_ok=True)


def _migrate(settings: Settings) -> None:
    from app import migrations

    _prepare(settings)
    migrations.upgrade(settings.resolved_database_url)
    logger.info("database schema is at head")


def _in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the configured database."""
    from app.db import Database

    async def run() -> T:
        database = Database(settings.resolved_database_url)
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
        secret = _in_session(
            settings,
            lambda session: users.bootstrap_admin(session, token=settings.bootstrap_admin_token),
        )
    except IntegrityError:
        return  # another process starting at the same moment created the administrator
    if secret is not None:
        print(
            f"modelreg: created the administrator 'admin'; its access token (shown once): {secret}",
            file=sys.stderr,
            flush=True,
        )


def serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app

    if args.migrate:
        _migrate(settings)
    else:
        _prepare(settings)
    _bootstrap_admin(settings)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)


def worker(settings: Settings, args: argparse.Namespace) -> None:
    from workers.settings import run_worker

    run_worker(settings)


def migrate(settings: Settings, args: argparse.Namespace) -> None:
    _migrate(settings)


def export_schema(settings: Settings, args: argparse.Namespace) -> None:
    from app.graphql.schema import schema

    Path(args.output).write_text(schema.as_str() + "\n")


def user_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import users
    from app.services.actor import OPERATOR

    async def work(session: AsyncSession) -> None:
        await users.create_user(
            session,
            username=args.username,
            name=args.name,
            email=args.email,
            is_admin=args.admin,
            actor=OPERATOR,
        )

    _in_session(settings, work)
    print(f"created user '{args.username}'")


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelreg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the API server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8080)
    serve_parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not upgrade the database schema on start (when `modelreg migrate` runs apart)",
    )
    serve_parser.set_defaults(handler=serve)

    commands.add_parser("worker", help="run a background worker (needs Redis)").set_defaults(
        handler=worker
    )
    commands.add_parser("migrate", help="upgrade the database schema to head").set_defaults(
        handler=migrate
    )
    schema_parser = commands.add_parser("export-schema", help="write the GraphQL schema")
    schema_parser.add_argument("--output", default="schema.graphql")
    schema_parser.set_defaults(handler=export_schema)

    user = commands.add_parser("user", help="manage users").add_subparsers(required=True)
    user_create_parser = user.add_parser("create", help="create a user")
    user_create_parser.add_argument("username")
    user_create_parser.add_argument("--name")
    user_create_parser.add_argument("--email")
    user_create_parser.add_argument("--admin", action="store_true")
    user_create_parser.set_defaults(handler=user_create)

    token = commands.add_parser("token", help="manage access tokens").add_subparsers(required=True)
    token_create_parser = token.add_parser("create", help="create a token and print it once")
    token_create_parser.add_argument("--user", required=True)
    token_create_parser.add_argument("--name", default="cli")
    token_create_parser.add_argument("--scopes", default="api", help="api and/or read_api")
    token_create_parser.add_argument("--expires-in", type=int, metavar="DAYS")
    token_create_parser.set_defaults(handler=token_create)

    project = commands.add_parser("project", help="manage projects").add_subparsers(required=True)
    project_create_parser = project.add_parser("create", help="create a project")
    project_create_parser.add_argument("path")
    project_create_parser.add_argument("--name")
    project_create_parser.add_argument(
        "--visibility", choices=["private", "public"], default="private"
    )
    project_create_parser.add_argument("--owner", help="username of its first owner")
    project_create_parser.set_defaults(handler=project_create)

    member = commands.add_parser("member", help="manage project members").add_subparsers(
        required=True
    )
    member_add_parser = member.add_parser("add", help="add a member or change their role")
    member_add_parser.add_argument("project")
    member_add_parser.add_argument("user")
    member_add_parser.add_argument(
        "role", choices=["guest", "reporter", "developer", "maintainer", "owner"]
    )
    member_add_parser.set_defaults(handler=member_add)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        args.handler(settings, args)
    except (SettingsError, CommandError) as error:
        print(f"modelreg: {error}", file=sys.stderr)
        raise SystemExit(2) from None
