"""`import_mlflow`: an MLflow server's experiments, runs, artifacts, logged models and
registry imported into a project (`app.importing.job.run_import`: the command line's
import, its phases' counts on the job). Resumable: a retried attempt imports again and
continues where the last one stopped, since every unit is written once."""

from __future__ import annotations

from app.importing import job as importing
from app.models import Job
from app.services import jobs
from workers.context import JobContext
from workers.registry import handles


@handles(jobs.IMPORT_MLFLOW)
async def import_mlflow(context: JobContext, job: Job) -> None:
    """Import the source `payload["source_url"]` into project `payload["project"]`."""
    await importing.run_import(context.database, context.settings, context.artifacts, job)
