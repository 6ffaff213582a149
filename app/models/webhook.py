"""Webhooks: a project's subscriptions to its registry events, and the log of every
delivery made for them (one row per event and hook, with each attempt)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import string_enum


class WebhookStatus(enum.StrEnum):
    """MLflow's webhook statuses: only an active hook gets deliveries."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Webhook(Base):
    """Where a project's events go. The secret is stored encrypted with the server's key
    (`app.services.webhooks`); `events` holds MLflow's ``entity.action`` names."""

    __tablename__ = "webhooks"
    # Emitting an event reads a project's active hooks: one indexed select.
    __table_args__ = (sa.Index("ix_webhooks_project_id_status", "project_id", "status"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(256))
    url: Mapped[str] = mapped_column(sa.String(2048))
    events: Mapped[list[str]] = mapped_column(sa.JSON)
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[WebhookStatus] = mapped_column(
        string_enum(WebhookStatus), default=WebhookStatus.ACTIVE
    )
    encrypted_secret: Mapped[str | None] = mapped_column(sa.Text)
    # {"metric": name, "operator": ">"|">="|"<"|"<=", "threshold": number}: a candidate's
    # metric crossing it is candidate.metric_threshold_crossed (`webhooks.MetricThreshold`).
    metric_threshold: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one hook: the exact body sent, its stable delivery id, and each
    attempt (`attempt_log`; the last one's outcome also in its own columns). Deliveries
    of a hook with the same `ordering_key` (the object the event is about) are sent in
    id order."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index(
            "ix_webhook_deliveries_webhook_id_ordering_key_status",
            "webhook_id",
            "ordering_key",
            "status",
        ),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    # The X-MLflow-Delivery-Id every attempt carries: a receiver dedupes on it.
    delivery_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    webhook_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(64))
    ordering_key: Mapped[str] = mapped_column(sa.String(128))
    # The JSON body, as the bytes that are signed and sent (a redelivery sends them again).
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # When the next attempt is due; while one is under way, when its claim expires.
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_response_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    request_excerpt: Mapped[str | None] = mapped_column(sa.Text)
    response_excerpt: Mapped[str | None] = mapped_column(sa.Text)
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    # The delivery this one sends again (a redelivery), if any.
    redelivery_of_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("webhook_deliveries.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
