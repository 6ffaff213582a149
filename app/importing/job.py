"""The import as a job (`projectImportMlflow`): a maintainer asks, a worker imports.

* Asking (`request_import`) needs `IMPORT_RUNS` in the target project (maintainers).
  The source is an http(s) URL without credentials in it; its token, if any, is kept
  encrypted with the server key on the job (`Job.encrypted_secret`, cleared when the
  job ends), never in the payload that the job's subscribers are told. While an import
  into the project is waiting or running, another is refused.
* Running (`run_import`, the `import_mlflow` handler's work) is the command line's
  import (`runner.import_mlflow_server`) as the operator, with its phases' counts
  recorded on the job (`progress.JobProgress`). A retried job runs it again: the
  import is resumable and idempotent, so it continues where the last attempt stopped.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import AlreadyExistsError, InvalidValueError
from app.importing.progress import JobProgress
from app.importing.runner import ImportOptions, ImportSummary, import_mlflow_server
from app.models import Job, Project
from app.services import audit, jobs, policy, webhooks
from app.services.actor import Actor
from app.settings import Settings
from app.storage import ArtifactStore

MAX_SOURCE_URL_LENGTH = 2000


def _check_source_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidValueError(
            f"The source must be an MLflow server's http(s) URL, not '{url}'", field="sourceUri"
        )
    if parsed.username is not None or parsed.password is not None:
        raise InvalidValueError(
            "The source URL must not hold credentials: pass them as the token", field="sourceUri"
        )
    if len(url) > MAX_SOURCE_URL_LENGTH:
        raise InvalidValueError(
            f"The source URL is at most {MAX_SOURCE_URL_LENGTH} characters", field="sourceUri"
        )
    return url.strip()


def _names(names: Sequence[str] | None, field: str) -> list[str] | None:
    if names is None:
        return None
    if any(not name.strip() for name in names):
        raise InvalidValueError(f"An empty name in {field}", field=field)
    return sorted(set(names))


async def request_import(
    session: AsyncSession,
    *,
    project: Project,
    source_url: str,
    token: str | None,
    experiments: Sequence[str] | None,
    models: Sequence[str] | None,
    since: dt.datetime | None,
    settings: Settings,
    actor: Actor | None,
) -> Job:
    """Enqueue the import of the MLflow server at `source_url` into `project`, once
    `actor` may (`IMPORT_RUNS`): experiments (by name or id) and registered models (by
    name) as listed, all when None; runs started at or after `since` only."""
    await policy.authorize(session, actor, project, policy.Operation.IMPORT_RUNS)
    payload: dict[str, Any] = {
        "project_id": project.id,
        "project": project.path,
        "source_url": _check_source_url(source_url),
        "experiments": _names(experiments, "experiments"),
        "models": _names(models, "models"),
        "since_ms": None if since is None else int(since.timestamp() * 1000),
    }
    running = await session.scalar(
        sa.select(Job.id)
        .where(
            Job.kind == jobs.IMPORT_MLFLOW,
            Job.project_id == project.id,
            Job.status.in_(jobs.UNFINISHED),
        )
        .limit(1)
    )
    if running is not None:
        raise AlreadyExistsError(
            f"An import into project '{project.path}' is not finished yet (job {running})",
            field="project",
        )
    job = await jobs.enqueue(
        session, kind=jobs.IMPORT_MLFLOW, payload=payload, project_id=project.id
    )
    job.encrypted_secret = webhooks.encrypt_secret(settings, token)
    await audit.record(
        session,
        actor=actor,
        action="project.import_mlflow",
        target=job,
        project_id=project.id,
        details={"source_url": payload["source_url"]},
    )
    return job


def _options(payload: dict[str, Any]) -> ImportOptions:
    def names(key: str) -> frozenset[str] | None:
        listed = payload.get(key)
        return None if listed is None else frozenset(listed)

    return ImportOptions(
        experiments=names("experiments"), models=names("models"), since_ms=payload.get("since_ms")
    )


async def run_import(
    database: Database, settings: Settings, store: ArtifactStore, job: Job
) -> ImportSummary:
    """Run the import `job` asks for, recording its progress on it."""
    progress = JobProgress(database, job.id)
    summary = await import_mlflow_server(
        database,
        store,
        source_url=job.payload["source_url"],
        token=webhooks.decrypt_secret(settings, job.encrypted_secret),
        project_path=job.payload["project"],
        options=_options(job.payload),
        progress=progress,
    )
    await progress.finish(summary.as_dict())
    return summary
