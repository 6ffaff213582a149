"""ids are never reused on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:20:00

SQLite gives a new row the highest id plus one, so destroying the newest model, version
or candidate handed its id, and with it its global id and package API address, to the
next one made. AUTOINCREMENT keeps every id ever given out. SQLite cannot add it in place:
the tables are rebuilt, rows, indexes and constraints copied (foreign keys are off during
migrations and checked before the commit). PostgreSQL's sequences never reuse ids.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("models", "model_versions", "candidates")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
