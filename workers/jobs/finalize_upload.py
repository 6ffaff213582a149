"""`finalize_upload`: verify a file uploaded through the package API and read what it
says about the model.

Payload: ``package_id``, ``path``, ``storage_key`` (the object the upload stored),
``size`` and ``sha256`` (what the server measured while storing it) and
``expected_sha256`` (the client's ``X-Checksum-SHA256``, or null).

The job re-reads the object from the store, streaming, and compares its size and sha256
with what was recorded and with what the client expected. A mismatch marks the package
`error` and keeps the reason in the job's verdict. A good ``MLmodel`` file has its flavors
and signature summary recorded in the metadata of the version (or candidate) that owns the
package. Then the package's status is settled (`default` once nothing awaits verification).

Idempotent: a rerun verifies again and writes the same verdict; a file replaced since the
upload is left to the job of the newer upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import sqlalchemy as sa
import yaml  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFoundError
from app.models import (
    Candidate,
    CandidateMetadata,
    Job,
    ModelVersion,
    ModelVersionMetadata,
    Package,
    PackageFile,
)
from app.services import jobs, key_values, packages
from app.storage import ArtifactStore
from workers.context import JobContext
from workers.registry import handles

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
# An MLmodel file is a few kilobytes; a bigger one is not parsed.
MAX_MLMODEL_BYTES = 1024 * 1024
# Metadata values stay short: a summary, not the whole schema.
MAX_SUMMARY_LENGTH = 2000


async def measure(store: ArtifactStore, key: str) -> tuple[int, str]:
    """The size and hex sha256 of a stored object, read as a stream."""
    digest = hashlib.sha256()
    size = 0
    async with await store.open(key) as stream:
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def mlmodel_metadata(content: bytes) -> dict[str, str]:
    """Flavors and signature summary of an MLmodel file, as metadata entries."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as error:
        return {"mlflow.mlmodel.error": f"not valid YAML: {error}"[:MAX_SUMMARY_LENGTH]}
    if not isinstance(document, dict):
        return {"mlflow.mlmodel.error": "not a YAML mapping"}
    entries: dict[str, str] = {}
    flavors = document.get("flavors")
    if isinstance(flavors, dict):
        entries["mlflow.flavors"] = ",".join(sorted(str(name) for name in flavors))
    signature = document.get("signature")
    if isinstance(signature, dict):
        for part in ("inputs", "outputs", "params"):
            value = signature.get(part)
            if value is not None:
                entries[f"mlflow.signature.{part}"] = _summary(value)
    return entries


def _summary(value: Any) -> str:
    """A signature part (MLflow stores it as a JSON string) in at most MAX_SUMMARY_LENGTH."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_SUMMARY_LENGTH:
        return text[: MAX_SUMMARY_LENGTH - 3] + "..."
    return text


def _problems(
    payload: dict[str, Any], recorded: PackageFile, size: int | None, sha256: str | None
) -> list[str]:
    if size is None or sha256 is None:
        return ["the stored object is missing"]
    problems = []
    if size != recorded.size:
        problems.append(f"stored size {size} differs from the recorded {recorded.size} bytes")
    if recorded.sha256 and sha256 != recorded.sha256:
        problems.append(f"stored sha256 {sha256} differs from the recorded {recorded.sha256}")
    expected = payload.get("expected_sha256")
    if expected and sha256 != expected:
        problems.append(f"sha256 {sha256} does not match X-Checksum-SHA256 {expected}")
    return problems


async def _record_mlmodel(session: AsyncSession, package: Package, entries: dict[str, str]) -> None:
    if not entries:
        return
    version_id = await session.scalar(
        sa.select(ModelVersion.id).where(ModelVersion.package_id == package.id)
    )
    if version_id is not None:
        await key_values.replace(session, ModelVersionMetadata, owner_id=version_id, items=entries)
        return
    candidate_id = await session.scalar(
        sa.select(Candidate.id).where(Candidate.package_id == package.id)
    )
    if candidate_id is not None:
        await key_values.replace(session, CandidateMetadata, owner_id=candidate_id, items=entries)


async def _current_file(session: AsyncSession, payload: dict[str, Any]) -> PackageFile | None:
    found: PackageFile | None = await session.scalar(
        sa.select(PackageFile).where(
            PackageFile.package_id == int(payload["package_id"]),
            PackageFile.path == str(payload["path"]),
        )
    )
    return found


@handles(jobs.FINALIZE_UPLOAD)
async def finalize_upload(context: JobContext, job: Job) -> None:
    payload = job.payload
    async with context.database.session(read_only=True) as session:
        recorded = await _current_file(session, payload)
    verdict: dict[str, Any]
    entries: dict[str, str] = {}
    if recorded is None or recorded.storage_key != payload["storage_key"]:
        verdict = {"verdict": "superseded"}
    else:
        try:
            size, sha256 = await measure(context.artifacts, recorded.storage_key)
        except NotFoundError:
            size, sha256 = None, None
        problems = _problems(payload, recorded, size, sha256)
        if problems:
            verdict = {"verdict": "error", "reason": f"{payload['path']}: " + "; ".join(problems)}
        else:
            verdict = {"verdict": "ok", "sha256": sha256}
            path = str(payload["path"])
            if (path == MLMODEL_FILE or path.endswith(f"/{MLMODEL_FILE}")) and (
                recorded.size <= MAX_MLMODEL_BYTES
            ):
                stream = await context.artifacts.open(recorded.storage_key)
                entries = mlmodel_metadata(await stream.read_all())
    async with context.database.session() as session:
        package = await session.get(Package, int(payload["package_id"]), with_for_update=True)
        if package is None:
            return
        # The verdict and the status it leads to are written together, so a concurrent
        # job settling the same package sees this one as done.
        await session.execute(
            sa.update(Job)
            .where(Job.id == job.id)
            .values(progress=verdict)
            .execution_options(synchronize_session=False)
        )
        current = await _current_file(session, payload)
        if (
            verdict["verdict"] == "ok"
            and current is not None
            and current.storage_key == payload["storage_key"]
        ):
            await _record_mlmodel(session, package, entries)
        status = await packages.settle_package_status(
            session, package=package, finished_job_id=job.id
        )
    if verdict["verdict"] == "error":
        logger.warning("upload to package %s failed verification: %s", package.id, verdict)
    logger.info("package %s is %s after job %s", payload["package_id"], status, job.id)
