"""Job kinds and the handlers that run them."""

from __future__ import annotations

from app.services import jobs
from workers.context import JobContext, JobHandler
from workers.jobs import destruction, purge_deleted_runs
from workers.jobs.finalize_upload import finalize_upload
from workers.jobs.migrate_package_types import migrate_package_types

__all__ = ["HANDLERS", "JobContext", "JobHandler", "handler_for"]

HANDLERS: dict[str, JobHandler] = {
    jobs.PURGE_DELETED_RUNS: purge_deleted_runs.purge_deleted_runs,
    jobs.DELETE_MODEL: destruction.delete_model,
    jobs.DELETE_VERSION: destruction.delete_version,
    jobs.DELETE_CANDIDATE: destruction.delete_candidate,
    jobs.FINALIZE_UPLOAD: finalize_upload,
    jobs.MIGRATE_PACKAGE_TYPES: migrate_package_types,
}

if HANDLERS.keys() != jobs.JOB_KINDS:
    raise RuntimeError(
        "every job kind needs exactly one handler; kinds without one: "
        f"{sorted(jobs.JOB_KINDS - HANDLERS.keys())}, handlers without a kind: "
        f"{sorted(HANDLERS.keys() - jobs.JOB_KINDS)}"
    )


def handler_for(kind: str) -> JobHandler:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no handler for job kind {kind!r}") from None
