"""One home per job kind, and the outbox as the only link from `app/` to the workers:
the kind names are the services' contract, each handler declares the kind it runs,
and the app starts only with a dispatcher factory handed to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.main import create_app
from app.models import Job
from app.services import jobs
from tests.clients import app_settings
from workers import registry
from workers.context import JobContext
from workers.jobs import destruction


def test_every_kind_has_the_handler_declared_beside_it() -> None:
    assert registry.HANDLERS.keys() == jobs.JOB_KINDS
    assert registry.handler_for(jobs.DELETE_VERSION) is destruction.delete_version


async def _handler(context: JobContext, job: Job) -> None:
    """A handler that is never run: only its registration is tested."""


def test_a_handler_for_an_unknown_kind_is_refused() -> None:
    with pytest.raises(LookupError, match="unknown job kind 'no_such_kind'"):
        registry.handles("no_such_kind")(_handler)


def test_a_second_handler_for_a_kind_is_refused() -> None:
    with pytest.raises(RuntimeError, match="'delete_model' has two handlers"):
        registry.handles(jobs.DELETE_MODEL)(_handler)
    assert registry.handler_for(jobs.DELETE_MODEL) is destruction.delete_model


def test_the_app_imports_nothing_of_the_workers() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app.main, app.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'workers'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert loaded.stdout.strip() == "[]"


async def test_an_app_without_a_dispatcher_factory_refuses_to_start(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    with pytest.raises(RuntimeError, match="needs a dispatcher_factory"):
        async with app.router.lifespan_context(app):
            pass
