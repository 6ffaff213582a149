"""Candidates (MLflow runs) and what they log: params, metrics, metadata."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import CandidateStatus, LifecycleState, string_enum


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "iid"),
        sa.Index("ix_candidates_model_id_state_start_time", "model_id", "state", "start_time"),
        # Ids are never reused on SQLite either: a stale id must not name a new row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    iid: Mapped[int] = mapped_column(sa.BigInteger)
    # External id: the MLflow run id (32 hex characters).
    eid: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(250))
    status: Mapped[CandidateStatus] = mapped_column(
        string_enum(CandidateStatus), default=CandidateStatus.RUNNING
    )
    # Milliseconds since the epoch, as MLflow reports them.
    start_time: Mapped[int | None] = mapped_column(sa.BigInteger)
    end_time: Mapped[int | None] = mapped_column(sa.BigInteger)
    state: Mapped[LifecycleState] = mapped_column(
        string_enum(LifecycleState), default=LifecycleState.ACTIVE
    )
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    model_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="SET NULL"), unique=True
    )
    package_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("packages.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CandidateParam(Base):
    """A hyper-parameter; written once, never changed."""

    __tablename__ = "candidate_params"

    candidate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class CandidateMetadata(Base):
    """Key/value metadata of a candidate (MLflow run tags)."""

    __tablename__ = "candidate_metadata"
    __table_args__ = (
        # A run's children, by their `mlflow.parentRunId` tag: the first 32 characters
        # hold a run id, and keep a long value within PostgreSQL's index entry size.
        sa.Index(
            "ix_candidate_metadata_parent_run",
            sa.text("substr(value, 1, 32)"),
            postgresql_where=sa.text("name = 'mlflow.parentRunId'"),
            sqlite_where=sa.text("name = 'mlflow.parentRunId'"),
        ),
    )

    candidate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class CandidateMetric(Base):
    """One logged metric value; the append-only history. A point is stored once per
    (candidate, name, step, timestamp, value), as MLflow keeps it. NaN is stored as 0 with
    `is_nan` set, as MLflow does: SQLite cannot hold a NaN, and a NULL would never collide
    on the unique index. A point logged for an MLflow logged model names it, and the
    dataset it was measured on."""

    __tablename__ = "candidate_metrics"
    __table_args__ = (
        # Also the index of a metric's history: (candidate_id, name, step) is its prefix.
        sa.Index(
            "uq_candidate_metrics_point",
            "candidate_id",
            "name",
            "step",
            "timestamp",
            "value",
            "is_nan",
            unique=True,
        ),
        # Partial: most points name no logged model, and ingest should not pay for them.
        sa.Index(
            "ix_candidate_metrics_logged_model_eid",
            "logged_model_eid",
            postgresql_where=sa.text("logged_model_eid IS NOT NULL"),
            sqlite_where=sa.text("logged_model_eid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(sa.ForeignKey("candidates.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(250))
    value: Mapped[float | None] = mapped_column(sa.Double)
    is_nan: Mapped[bool] = mapped_column(default=False)
    step: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    # MLflow's model id ("m-" and 32 hex characters) as the client sent it.
    logged_model_eid: Mapped[str | None] = mapped_column(sa.String(64))
    dataset_name: Mapped[str | None] = mapped_column(sa.String(500))
    dataset_digest: Mapped[str | None] = mapped_column(sa.String(36))


class CandidateLatestMetric(Base):
    """The latest value of each metric of a candidate: the highest (step, timestamp,
    value). Carries model_id so candidates of a model filter and sort by an index. Also
    sums up the history's steps for charts: the lowest (`first_step`, None where unknown),
    and whether each step from it to `step` holds exactly one point (`dense_steps`: a
    chart then reads its cut by step instead of numbering every point)."""

    __tablename__ = "candidate_latest_metrics"
    __table_args__ = (
        sa.Index("ix_candidate_latest_metrics_model_id_name_value", "model_id", "name", "value"),
    )

    candidate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    value: Mapped[float | None] = mapped_column(sa.Double)
    is_nan: Mapped[bool] = mapped_column(default=False)
    step: Mapped[int] = mapped_column(sa.BigInteger)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    first_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    dense_steps: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class CandidateInput(Base):
    """A dataset or model a candidate used, or a model it produced (MLflow's run inputs
    and outputs), kept as MLflow describes it; `key` makes logging it twice a no-op."""

    __tablename__ = "candidate_inputs"
    __table_args__ = (sa.UniqueConstraint("candidate_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(sa.ForeignKey("candidates.id", ondelete="CASCADE"))
    # dataset_input | model_input | model_output
    kind: Mapped[str] = mapped_column(sa.String(32))
    key: Mapped[str] = mapped_column(sa.String(512))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
