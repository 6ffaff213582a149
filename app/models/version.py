"""Model versions: a semver release of a model, owning exactly one candidate."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import LifecycleState, VersionStage, VersionStatus, string_enum


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "number"),
        sa.UniqueConstraint("model_id", "version"),
        # Ids are never reused on SQLite either: a stale id must not name a new row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    # Sequential per model: MLflow's integer version.
    number: Mapped[int] = mapped_column(sa.Integer)
    # Semantic version, "<number>.0.0" unless chosen.
    version: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    # Rendered once when the description is written (app/services/descriptions.py).
    description_html: Mapped[str | None] = mapped_column(sa.Text)
    stage: Mapped[VersionStage] = mapped_column(
        string_enum(VersionStage), default=VersionStage.NONE
    )
    status: Mapped[VersionStatus] = mapped_column(
        string_enum(VersionStatus), default=VersionStatus.READY
    )
    source: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[LifecycleState] = mapped_column(
        string_enum(LifecycleState), default=LifecycleState.ACTIVE
    )
    package_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("packages.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModelVersionMetadata(Base):
    """Key/value metadata of a version (MLflow model-version tags)."""

    __tablename__ = "model_version_metadata"

    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
