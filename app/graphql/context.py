"""What every resolver gets: the database, the caller, the request and its loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry
from starlette.requests import Request

from app.db import Database
from app.graphql.loaders import Loaders
from app.services.actor import Actor


@dataclass
class Context:
    request: Request
    database: Database
    actor: Actor | None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.database, self.actor)


Info = strawberry.Info[Context, None]
