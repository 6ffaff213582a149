"""What a model's ``MLmodel`` file says: its flavors (each with the version of the library
that wrote it, MLflow's ``<flavor>_version`` entry, when there is one) and its signature
(``inputs``, ``outputs`` and ``params``, each the list MLflow keeps as a JSON string,
decoded). Read from the stored file itself, so nothing is cut short; a file that is
missing, larger than `MAX_MLMODEL_BYTES` or not a YAML mapping says nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFoundError
from app.models import PackageFile
from app.services import packages
from app.storage import ArtifactStore

MLMODEL_FILE = "MLmodel"
# An MLmodel file is a few kilobytes; a bigger one is not read.
MAX_MLMODEL_BYTES = 1024 * 1024
SIGNATURE_PARTS = ("inputs", "outputs", "params")


@dataclass(frozen=True)
class Flavor:
    name: str
    version: str | None


@dataclass(frozen=True)
class ModelDescription:
    flavors: list[Flavor] = field(default_factory=list)
    signature: dict[str, Any] | None = None


def describe(content: bytes) -> ModelDescription:
    """The flavors and signature of an MLmodel file's content."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError:
        return ModelDescription()
    if not isinstance(document, dict):
        return ModelDescription()
    flavors = document.get("flavors")
    found = [
        Flavor(name=str(name), version=_version(name, settings))
        for name, settings in sorted((flavors if isinstance(flavors, dict) else {}).items())
    ]
    signature = document.get("signature")
    if not isinstance(signature, dict):
        return ModelDescription(flavors=found)
    parts = {part: _decoded(signature[part]) for part in SIGNATURE_PARTS if part in signature}
    return ModelDescription(flavors=found, signature=parts)


def _version(name: object, settings: object) -> str | None:
    value = settings.get(f"{name}_version") if isinstance(settings, dict) else None
    return None if value is None else str(value)


def _decoded(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def find_mlmodel(session: AsyncSession, *, package_id: int) -> PackageFile | None:
    """The ``MLmodel`` file at the root of a package, if it holds one."""
    return await packages.find_file(session, package_id=package_id, path=MLMODEL_FILE)


async def read_description(store: ArtifactStore, file: PackageFile | None) -> ModelDescription:
    """What an ``MLmodel`` file says (nothing when there is none); read with no database
    session held."""
    if file is None or file.size > MAX_MLMODEL_BYTES:
        return ModelDescription()
    content = bytearray()
    try:
        async with await store.open(file.storage_key) as stream:
            async for chunk in stream:
                content += chunk
    except NotFoundError:
        return ModelDescription()
    return describe(bytes(content))
