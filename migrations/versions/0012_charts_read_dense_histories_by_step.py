"""charts read dense histories by step; children are found by index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:00:00

A chart cuts a metric history down to evenly spaced points. Numbering every point of a
100,000-step history to pick 1,000 of them costs the whole history; a history whose
steps are dense (each step from the first to the last holds one point) needs no
numbering: its n-th point is at step first + n. `candidate_latest_metrics` gains the
history's lowest step (`first_step`) and whether its steps are dense (`dense_steps`),
kept by the logging path in the statement that moves the latest value; the rows there
now are backfilled from their histories.

A candidate's children are the candidates whose `mlflow.parentRunId` tag names it: a
partial index on that tag's value (its first 32 characters, the length of a run id, so
that a long value never exceeds PostgreSQL's index entry size) makes them an index read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARENT_RUN_INDEX = "ix_candidate_metadata_parent_run"
PARENT_RUN_CONDITION = "name = 'mlflow.parentRunId'"


def upgrade() -> None:
    op.add_column(
        "candidate_latest_metrics", sa.Column("first_step", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "candidate_latest_metrics",
        sa.Column("dense_steps", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        """
        UPDATE candidate_latest_metrics SET
            first_step = (
                SELECT min(history.step) FROM candidate_metrics AS history
                WHERE history.candidate_id = candidate_latest_metrics.candidate_id
                    AND history.name = candidate_latest_metrics.name
            ),
            dense_steps = COALESCE((
                SELECT count(*) = max(history.step) - min(history.step) + 1
                    AND count(DISTINCT history.step) = count(*)
                FROM candidate_metrics AS history
                WHERE history.candidate_id = candidate_latest_metrics.candidate_id
                    AND history.name = candidate_latest_metrics.name
            ), false)
        """
    )
    op.create_index(
        PARENT_RUN_INDEX,
        "candidate_metadata",
        [sa.text("substr(value, 1, 32)")],
        postgresql_where=sa.text(PARENT_RUN_CONDITION),
        sqlite_where=sa.text(PARENT_RUN_CONDITION),
    )


def downgrade() -> None:
    op.drop_index(PARENT_RUN_INDEX, table_name="candidate_metadata")
    with op.batch_alter_table("candidate_latest_metrics") as batch:
        batch.drop_column("dense_steps")
        batch.drop_column("first_step")
