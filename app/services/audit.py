"""The audit trail: every change records who made it, with which token, and to what."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Base
from app.models import AuditEvent
from app.services.actor import Actor


async def record(
    session: AsyncSession,
    *,
    actor: Actor | None,
    action: str,
    target: Base,
    project_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit event in the transaction of the change it describes; the project
    defaults to the target's."""
    session.add(
        AuditEvent(
            project_id=project_id
            if project_id is not None
            else getattr(target, "project_id", None),
            actor_id=actor.user_id if actor else None,
            token_id=actor.token_id if actor else None,
            action=action,
            target_type=target.__tablename__,
            target_id=getattr(target, "id", None),
            details=details or {},
        )
    )
