"""The `modelreg` command: serve | worker | migrate | export-schema."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app.observability import configure_logging
from app.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("modelreg")


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


def serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app

    if args.migrate:
        _migrate(settings)
    else:
        _prepare(settings)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)


def worker(settings: Settings, args: argparse.Namespace) -> None:
    from workers.settings import run_worker

    run_worker(settings)


def migrate(settings: Settings, args: argparse.Namespace) -> None:
    _migrate(settings)


def export_schema(settings: Settings, args: argparse.Namespace) -> None:
    from app.graphql.schema import schema

    Path(args.output).write_text(schema.as_str() + "\n")


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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        args.handler(settings, args)
    except SettingsError as error:
        print(f"modelreg: {error}", file=sys.stderr)
        raise SystemExit(2) from None
