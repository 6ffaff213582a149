"""descriptions keep their HTML

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:00:00

Models and versions rendered their Markdown description at every read, on the event
loop. They now store the HTML beside it, rendered once when the description is written
(app/services/descriptions.py). This revision adds the column and fills it for the rows
that already have a description, in batches, with the renderer as this revision ships
it: CommonMark with raw HTML off, and a description longer than the new 10,000-character
limit shown as escaped preformatted text (markdown-it's time grows with the length).
"""

import html
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from markdown_it import MarkdownIt

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("models", "model_versions")
BATCH_SIZE = 500
MAX_DESCRIPTION_LENGTH = 10_000

_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def _to_html(text: str) -> str:
    if len(text) > MAX_DESCRIPTION_LENGTH:
        return f"<pre>{html.escape(text)}</pre>\n"
    rendered: str = _MARKDOWN.render(text)
    return rendered


def _fill(table_name: str) -> None:
    table = sa.table(
        table_name,
        sa.column("id", sa.BigInteger),
        sa.column("description", sa.Text),
        sa.column("description_html", sa.Text),
    )
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, table.c.description)
            .where(table.c.id > last_id, table.c.description.is_not(None))
            .order_by(table.c.id)
            .limit(BATCH_SIZE)
        ).all()
        if not rows:
            return
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values(description_html=sa.bindparam("rendered")),
            [{"row_id": row_id, "rendered": _to_html(text)} for row_id, text in rows],
        )
        last_id = rows[-1].id


def upgrade() -> None:
    for table_name in TABLES:
        with op.batch_alter_table(
            table_name, table_kwargs={"sqlite_autoincrement": True}
        ) as batch_op:
            batch_op.add_column(sa.Column("description_html", sa.Text(), nullable=True))
        _fill(table_name)


def downgrade() -> None:
    # SQLite drops the column by rebuilding the table: it keeps AUTOINCREMENT (0004).
    for table_name in TABLES:
        with op.batch_alter_table(
            table_name, table_kwargs={"sqlite_autoincrement": True}
        ) as batch_op:
            batch_op.drop_column("description_html")
