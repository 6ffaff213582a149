"""What every resolver gets: the database, the caller, and the request."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry
from starlette.requests import Request

from app.db import Database
from app.services.actor import Actor


@dataclass
class Context:
    request: Request
    database: Database
    actor: Actor | None


Info = strawberry.Info[Context, None]
