"""Domain errors raised by services; each surface maps them to its own convention."""

from __future__ import annotations


class DomainError(Exception):
    """A failure the caller can act on. `code` is stable; `field` names the bad input."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFoundError(DomainError):
    code = "not_found"


class AlreadyExistsError(DomainError):
    code = "already_exists"


class InvalidValueError(DomainError):
    code = "invalid_value"


class ForbiddenError(DomainError):
    code = "forbidden"


class UnauthenticatedError(DomainError):
    code = "unauthenticated"
