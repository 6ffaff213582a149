"""The audit trail: who changed what, when, and with which token."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    # Plain ids, no foreign keys: the trail outlives what it describes.
    project_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    token_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(64))
    target_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
