"""models keep their candidate keys

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:00:00

A frontend's column chooser asks which metric, param and tag names a model's candidates
have logged. `model_candidate_keys` keeps them, one row per (model, kind, name), written
by the logging paths as they log; reading it costs the same at 100 candidates as at
100,000. Tags under MLflow's reserved `mlflow.` prefix are left out, as MLflow's UI
leaves them out of its columns. The rows are backfilled from every candidate the models
hold now, deleted ones included (they can be restored).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    keys = op.create_table(
        "model_candidate_keys",
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_candidate_keys_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "kind", "name", name=op.f("pk_model_candidate_keys")),
    )
    assert keys is not None
    candidates = sa.table("candidates", sa.column("id"), sa.column("model_id"))
    latest = sa.table("candidate_latest_metrics", sa.column("model_id"), sa.column("name"))
    params = sa.table("candidate_params", sa.column("candidate_id"), sa.column("name"))
    tags = sa.table("candidate_metadata", sa.column("candidate_id"), sa.column("name"))
    metric_names = sa.select(latest.c.model_id, sa.literal("metric"), latest.c.name).distinct()
    param_names = (
        sa.select(candidates.c.model_id, sa.literal("param"), params.c.name)
        .join(params, params.c.candidate_id == candidates.c.id)
        .distinct()
    )
    tag_names = (
        sa.select(candidates.c.model_id, sa.literal("tag"), tags.c.name)
        .join(tags, tags.c.candidate_id == candidates.c.id)
        # substr, not LIKE: SQLite's LIKE ignores case, and MLflow's prefix does not.
        .where(sa.func.substr(tags.c.name, 1, len("mlflow.")) != "mlflow.")
        .distinct()
    )
    for names in (metric_names, param_names, tag_names):
        op.execute(keys.insert().from_select(["model_id", "kind", "name"], names))


def downgrade() -> None:
    op.drop_table("model_candidate_keys")
