"""the default project, with its Default model behind MLflow's experiment 0

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:05:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

projects = sa.table(
    "projects",
    sa.column("id", sa.BigInteger),
    sa.column("path", sa.String),
    sa.column("name", sa.String),
    sa.column("visibility", sa.String),
    sa.column("last_model_iid", sa.BigInteger),
    sa.column("last_candidate_iid", sa.BigInteger),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
models = sa.table(
    "models",
    sa.column("project_id", sa.BigInteger),
    sa.column("iid", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("display_name", sa.String),
    sa.column("registered", sa.Boolean),
    sa.column("state", sa.String),
    sa.column("last_version_number", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    now = dt.datetime.now(dt.UTC)
    connection = op.get_bind()
    project_id = connection.execute(
        projects.insert()
        .values(
            path="default",
            name="Default",
            visibility="private",
            last_model_iid=0,
            last_candidate_iid=0,
            created_at=now,
            updated_at=now,
        )
        .returning(projects.c.id)
    ).scalar_one()
    connection.execute(
        models.insert().values(
            project_id=project_id,
            iid=0,
            name="default",
            display_name="Default",
            registered=False,
            state="active",
            last_version_number=0,
            created_at=now,
            updated_at=now,
        )
    )


def downgrade() -> None:
    connection = op.get_bind()
    project_id = sa.select(projects.c.id).where(projects.c.path == "default").scalar_subquery()
    connection.execute(models.delete().where(models.c.project_id == project_id))
    connection.execute(projects.delete().where(projects.c.path == "default"))
