"""browser sessions and passwords

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:00:00

Browsers sign in with a password or an access token and hold a server-side session in a
cookie. Users get an optional argon2id password hash; `browser_sessions` keeps a digest of
each session's cookie secret and of its CSRF token (never either secret), its owner, the
token it was opened with, its scopes and its expiry. No existing row changes: nobody has a
password or a session yet.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
    op.create_table(
        "browser_sessions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("access_token_id", _ID, nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("csrf_digest", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_browser_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["access_token_id"],
            ["access_tokens.id"],
            name=op.f("fk_browser_sessions_access_token_id_access_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_sessions")),
        sa.UniqueConstraint("digest", name=op.f("uq_browser_sessions_digest")),
    )
    with op.batch_alter_table("browser_sessions") as batch_op:
        batch_op.create_index(batch_op.f("ix_browser_sessions_user_id"), ["user_id"])
        batch_op.create_index(
            batch_op.f("ix_browser_sessions_access_token_id"), ["access_token_id"]
        )


def downgrade() -> None:
    op.drop_table("browser_sessions")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("password_hash")
