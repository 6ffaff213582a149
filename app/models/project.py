"""Projects and who belongs to them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import LifecycleState, Role, RoleType, Visibility, string_enum


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(100), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    visibility: Mapped[Visibility] = mapped_column(
        string_enum(Visibility), default=Visibility.PRIVATE
    )
    # Counters for project-scoped iids; bumped with UPDATE ... RETURNING, which also
    # serializes concurrent creations in one project.
    last_model_iid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_candidate_iid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # ACTIVE, or PENDING_DESTRUCTION while a `delete_project` job removes it (never DELETED).
    state: Mapped[LifecycleState] = mapped_column(
        string_enum(LifecycleState), default=LifecycleState.ACTIVE, server_default="active"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (sa.UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(RoleType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
