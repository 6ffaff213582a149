"""The names a model's candidates have logged: the columns a frontend offers to show."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class ModelCandidateKey(Base):
    """A metric, param or tag name some candidate of the model logged, kept by the logging
    paths as they write (app/services/candidate_keys.py), so the model's keys are read
    from here and never by scanning its candidates."""

    __tablename__ = "model_candidate_keys"

    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    # metric | param | tag
    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
