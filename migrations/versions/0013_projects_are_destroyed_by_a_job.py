"""projects are destroyed by a job

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 17:30:00

Deleting a project with everything in it (MLflow's CASCADE deletion of a workspace) marks
it pending destruction and leaves the removal to a `delete_project` job: `projects` gains
the lifecycle `state` its models have, every existing project active.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "deleted",
                "pending_destruction",
                name="lifecyclestate",
                native_enum=False,
                length=32,
            ),
            server_default="active",
            nullable=False,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("state")
