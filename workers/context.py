"""What a job handler receives besides its job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.db import Database
from app.models import Job
from app.settings import Settings
from app.storage import ArtifactStore


@dataclass(frozen=True)
class JobContext:
    database: Database
    settings: Settings
    # The process's started artifact store: jobs delete the objects of what they remove.
    artifacts: ArtifactStore


# A handler must be idempotent and resumable: it works in batches, each in its own
# transaction, records its progress after each one, and reads `job.progress` on start.
JobHandler = Callable[[JobContext, Job], Awaitable[None]]
