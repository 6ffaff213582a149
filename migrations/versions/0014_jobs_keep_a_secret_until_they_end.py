"""jobs keep a secret until they end

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 18:00:00

A job that needs a credential (the MLflow import's source token) keeps it encrypted with
the server key in `jobs.encrypted_secret`, out of the payload its subscribers are told;
it is cleared when the job succeeds or fails for good.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("encrypted_secret", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("encrypted_secret")
