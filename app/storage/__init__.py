"""Artifact storage: the ArtifactStore protocol and the store the settings select."""

from __future__ import annotations

from app.settings import Settings
from app.storage.base import (
    ArtifactStore,
    ArtifactStoreError,
    ArtifactStoreUnavailableError,
    ObjectInfo,
    ObjectStream,
    RangeNotSatisfiableError,
    StoredObject,
)
from app.storage.keys import join_key, validate_key
from app.storage.local import LocalArtifactStore
from app.storage.s3 import S3ArtifactStore

__all__ = [
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactStoreUnavailableError",
    "LocalArtifactStore",
    "ObjectInfo",
    "ObjectStream",
    "RangeNotSatisfiableError",
    "S3ArtifactStore",
    "StoredObject",
    "create_artifact_store",
    "join_key",
    "validate_key",
]


def create_artifact_store(settings: Settings) -> ArtifactStore:
    """The S3 store when MODELREG_ARTIFACTS is an s3:// location, else the local directory.

    The caller starts it (``await store.start()``) and closes it at shutdown.
    """
    if (location := settings.s3_location) is not None:
        return S3ArtifactStore(
            location.bucket,
            location.prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    return LocalArtifactStore(settings.artifact_directory)
