"""Enumerations stored in the database, as strings (or integers for roles)."""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa


class Visibility(enum.StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"


class Role(enum.IntEnum):
    """Project roles, ordered by what they may do (GitLab's access levels)."""

    GUEST = 10
    REPORTER = 20
    DEVELOPER = 30
    MAINTAINER = 40
    OWNER = 50


class LifecycleState(enum.StrEnum):
    """Where a row is in its life: soft-deleted rows can be restored, rows pending
    destruction are invisible and being removed by a worker."""

    ACTIVE = "active"
    DELETED = "deleted"
    PENDING_DESTRUCTION = "pending_destruction"


class CandidateStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class VersionStage(enum.StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class VersionStatus(enum.StrEnum):
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"
    READY = "READY"


class PackageType(enum.StrEnum):
    ML_MODEL = "ml_model"
    GENERIC = "generic"


class PackageStatus(enum.StrEnum):
    DEFAULT = "default"
    PROCESSING = "processing"
    ERROR = "error"
    PENDING_DESTRUCTION = "pending_destruction"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def string_enum(enum_class: type[enum.StrEnum]) -> sa.Enum:
    """A portable column type holding the enum's values as plain strings."""
    return sa.Enum(
        enum_class,
        native_enum=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class RoleType(sa.types.TypeDecorator[Role]):
    """Stores a Role as its integer access level."""

    impl = sa.SmallInteger()
    cache_ok = True

    def process_bind_param(self, value: Role | None, dialect: Any) -> int | None:
        return None if value is None else int(value)

    def process_result_value(self, value: int | None, dialect: Any) -> Role | None:
        return None if value is None else Role(value)
