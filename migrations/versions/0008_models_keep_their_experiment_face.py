"""models keep their experiment face

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00

MLflow keeps experiments and registered models in two namespaces. A model here plays
both parts, so it now records whether it is an experiment, beside `registered`: a model
created through the registry API alone is not an experiment until one is created under
its name. Every existing model was listed as an experiment, and stays one.

The experiment face is deleted and restored on its own (`experiment_deleted_at`): a model
that is also registered stays active when its experiment is deleted. Every model deleted
so far was deleted as an experiment, so its experiment face is deleted since then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# SQLite rebuilds the table to add a column with an expression as its default: the
# rebuilt table keeps AUTOINCREMENT (migration 0004), so ids are still never reused.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("experiment", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("experiment_deleted_at", sa.DateTime(timezone=True), nullable=True)
        )
    models = sa.table(
        "models",
        sa.column("state", sa.String()),
        sa.column("deleted_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("experiment_deleted_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        models.update()
        .where(models.c.state == "deleted")
        .values(experiment_deleted_at=sa.func.coalesce(models.c.deleted_at, models.c.updated_at))
    )


def downgrade() -> None:
    with op.batch_alter_table("models", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column("experiment_deleted_at")
        batch_op.drop_column("experiment")
