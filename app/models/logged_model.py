"""MLflow 3's logged models: a model's files and description, logged from a run or
alone, before (or without) becoming a version."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import LifecycleState, string_enum


class LoggedModel(Base):
    __tablename__ = "logged_models"

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # The experiment (our model) it was logged in.
    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    # MLflow's model id: "m-" and 32 hex characters.
    eid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    # PENDING, READY or FAILED, as MLflow's LoggedModelStatus.
    status: Mapped[str] = mapped_column(sa.String(32), default="LOGGED_MODEL_PENDING")
    status_message: Mapped[str | None] = mapped_column(sa.Text)
    model_type: Mapped[str | None] = mapped_column(sa.String(255))
    source_candidate_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("candidates.id", ondelete="SET NULL"), index=True
    )
    # The source run id as sent when it names no run of the project: MLflow keeps it
    # unchecked, so it reads back as given.
    source_run_eid: Mapped[str | None] = mapped_column(sa.String(255))
    package_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("packages.id", ondelete="SET NULL"), index=True
    )
    tags: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    params: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    state: Mapped[LifecycleState] = mapped_column(
        string_enum(LifecycleState), default=LifecycleState.ACTIVE
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
