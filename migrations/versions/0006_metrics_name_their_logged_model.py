"""metrics name their logged model

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:00:00

A metric point logged for an MLflow logged model now keeps the model's id and the
dataset it was measured on (three nullable columns), so the logged model can show its
metrics. A point is now stored once per (candidate, name, step, timestamp, value), as
MLflow's metric primary key has it: a unique index replaces the history index it
extends. NaN points move from a NULL value to 0 with `is_nan` set (MLflow's choice),
so that two NaN points collide on that index. Identical points stored before this
revision are removed first, keeping the oldest of each: they are copies of one another,
so nothing is lost. Both steps go in batches of candidates, for large tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANDIDATES_PER_BATCH = 500
HISTORY_INDEX = "ix_candidate_metrics_candidate_id_name_step"
POINT_INDEX = "uq_candidate_metrics_point"
LOGGED_MODEL_INDEX = "ix_candidate_metrics_logged_model_eid"

_metrics = sa.table(
    "candidate_metrics",
    sa.column("id", sa.BigInteger),
    sa.column("candidate_id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("value", sa.Double),
    sa.column("is_nan", sa.Boolean),
    sa.column("step", sa.BigInteger),
    sa.column("timestamp", sa.BigInteger),
)


def _candidate_batches() -> list[tuple[int, int]]:
    """Ranges of candidate ids, each of at most CANDIDATES_PER_BATCH candidates with metrics."""
    connection = op.get_bind()
    candidate_ids = list(
        connection.scalars(
            sa.select(_metrics.c.candidate_id).distinct().order_by(_metrics.c.candidate_id)
        )
    )
    return [
        (
            candidate_ids[start],
            candidate_ids[min(start + CANDIDATES_PER_BATCH, len(candidate_ids)) - 1],
        )
        for start in range(0, len(candidate_ids), CANDIDATES_PER_BATCH)
    ]


def _remove_identical_points(first: int, last: int) -> None:
    in_batch = _metrics.c.candidate_id.between(first, last)
    kept = (
        sa.select(sa.func.min(_metrics.c.id))
        .where(in_batch)
        .group_by(
            _metrics.c.candidate_id,
            _metrics.c.name,
            _metrics.c.step,
            _metrics.c.timestamp,
            _metrics.c.value,
            _metrics.c.is_nan,
        )
    )
    op.get_bind().execute(_metrics.delete().where(in_batch, _metrics.c.id.not_in(kept)))


def upgrade() -> None:
    with op.batch_alter_table(
        "candidate_metrics", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("logged_model_eid", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dataset_name", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("dataset_digest", sa.String(length=36), nullable=True))
    connection = op.get_bind()
    for first, last in _candidate_batches():
        in_batch = _metrics.c.candidate_id.between(first, last)
        connection.execute(
            _metrics.update().where(in_batch, _metrics.c.is_nan.is_(True)).values(value=0.0)
        )
        _remove_identical_points(first, last)
    with op.batch_alter_table(
        "candidate_metrics", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_index(HISTORY_INDEX)
        batch_op.create_index(
            POINT_INDEX,
            ["candidate_id", "name", "step", "timestamp", "value", "is_nan"],
            unique=True,
        )
        batch_op.create_index(
            LOGGED_MODEL_INDEX,
            ["logged_model_eid"],
            unique=False,
            postgresql_where=sa.text("logged_model_eid IS NOT NULL"),
            sqlite_where=sa.text("logged_model_eid IS NOT NULL"),
        )


def downgrade() -> None:
    # SQLite drops the columns by rebuilding the table: it keeps AUTOINCREMENT (0004).
    with op.batch_alter_table(
        "candidate_metrics", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_index(LOGGED_MODEL_INDEX)
        batch_op.drop_index(POINT_INDEX)
        batch_op.create_index(HISTORY_INDEX, ["candidate_id", "name", "step"], unique=False)
        batch_op.drop_column("dataset_digest")
        batch_op.drop_column("dataset_name")
        batch_op.drop_column("logged_model_eid")
    op.get_bind().execute(_metrics.update().where(_metrics.c.is_nan.is_(True)).values(value=None))
