"""logged models keep an unknown source run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00

MLflow's store keeps a logged model's `source_run_id` as sent, without checking that the
run exists. A logged model whose source run this server knows links to its candidate
(`source_candidate_id`); one whose run id names no run of its project now keeps that id
in a new nullable column, so the id reads back as sent. Existing rows stay as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("logged_models") as batch_op:
        batch_op.add_column(sa.Column("source_run_eid", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("logged_models") as batch_op:
        batch_op.drop_column("source_run_eid")
