"""Models: the experiment of MLflow's tracking API and the registered model of its registry."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import LifecycleState, string_enum


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "iid"),
        sa.UniqueConstraint("project_id", "name"),
        sa.UniqueConstraint("project_id", "display_name"),
        # Ids are never reused on SQLite either: a stale id must not name a new row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    # Project-scoped number; it is the MLflow experiment id (the Default model has 0).
    iid: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(255))
    display_name: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    # Rendered once when the description is written (app/services/descriptions.py).
    description_html: Mapped[str | None] = mapped_column(sa.Text)
    # Visible to the registry API once created there or given a version.
    registered: Mapped[bool] = mapped_column(default=False)
    # Visible to MLflow's experiment API unless created through the registry alone.
    experiment: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Set while the experiment face is deleted (restorable); the model itself is deleted
    # only when no registered face keeps it alive (app/services/models.py).
    experiment_deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[LifecycleState] = mapped_column(
        string_enum(LifecycleState), default=LifecycleState.ACTIVE
    )
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_version_number: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModelMetadata(Base):
    """Key/value metadata of a model (MLflow experiment and registered-model tags)."""

    __tablename__ = "model_metadata"

    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class ModelAlias(Base):
    """A named pointer to one version of a model (`champion` -> 3)."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
