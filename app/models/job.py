"""Background jobs: the transactional outbox that workers drain."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import JobStatus, string_enum


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_status_run_after", "status", "run_after"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    project_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[JobStatus] = mapped_column(string_enum(JobStatus), default=JobStatus.PENDING)
    # Free-form progress a job records as it goes, so a restart can resume.
    progress: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=5)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # A credential the job needs (a source's token), encrypted with the server key
    # (`webhooks.encrypt_secret`); never in the payload its subscribers are told, and
    # cleared when the job ends.
    encrypted_secret: Mapped[str | None] = mapped_column(sa.Text)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set once the job reached the queue (Redis); the sweep re-pushes rows without it.
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
