"""Which handler runs each job kind.

The kind names are the contract between the services that enqueue jobs and the workers
that run them: they live in `app.services.jobs.JOB_KINDS`, so `app/` never imports
`workers/`. Each handler module declares the kinds it runs beside their code with
`@handles(kind)`; importing `workers.jobs` registers every handler and checks that each
kind has exactly one.
"""

from __future__ import annotations

from collections.abc import Callable

from app.services import jobs
from workers.context import JobHandler

HANDLERS: dict[str, JobHandler] = {}


def handles(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register the decorated function as the handler of `kind`."""
    if kind not in jobs.JOB_KINDS:
        raise LookupError(f"unknown job kind {kind!r}; known kinds: {sorted(jobs.JOB_KINDS)}")

    def register(handler: JobHandler) -> JobHandler:
        if kind in HANDLERS:
            raise RuntimeError(f"job kind {kind!r} has two handlers")
        HANDLERS[kind] = handler
        return handler

    return register


def require_every_kind() -> None:
    """Fail the import of the handlers when a kind has none."""
    missing = jobs.JOB_KINDS - HANDLERS.keys()
    if missing:
        raise RuntimeError(f"every job kind needs a handler; kinds without one: {sorted(missing)}")


def handler_for(kind: str) -> JobHandler:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no handler for job kind {kind!r}") from None
