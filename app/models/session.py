"""Browser sessions: what a sign-in opens and the session cookie stands for."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow


class BrowserSession(Base):
    """A signed-in browser. Only SHA-256 digests of the cookie's secret and of the CSRF
    token are stored; ending the session deletes the row."""

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The token it was opened with (None for a password): the session ends with the token.
    access_token_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("access_tokens.id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    csrf_digest: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
