"""The acting subject every service call is made for."""

from __future__ import annotations

from dataclasses import dataclass

SCOPE_API = "api"
SCOPE_READ_API = "read_api"


@dataclass(frozen=True)
class Actor:
    """The authenticated caller: a user, and the token (with its scopes) they used."""

    # None for the operator, who acts through the command line with full rights.
    user_id: int | None
    username: str
    is_admin: bool
    token_id: int | None = None
    scopes: frozenset[str] = frozenset({SCOPE_API})

    @property
    def may_write(self) -> bool:
        return SCOPE_API in self.scopes


OPERATOR = Actor(user_id=None, username="operator", is_admin=True)
