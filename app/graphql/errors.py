"""Expected failures as GraphQL types. Services raise domain errors; these handlers turn
them into the matching member of a mutation's result union."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types.field import StrawberryField

from app import errors


@strawberry.interface(description="A failure the caller can act on.")
class Error:
    message: str
    code: str = strawberry.field(description="A stable machine-readable code.")
    field: str | None = strawberry.field(description="The input field at fault, if any.")


@strawberry.type(description="An input is not valid.")
class ValidationError(Error):
    pass


@strawberry.type(description="The object does not exist, or the caller may not see it.")
class NotFoundError(Error):
    pass


@strawberry.type(description="The caller may not do this (or must authenticate first).")
class PermissionError(Error):
    pass


@strawberry.type(description="The change conflicts with existing data (a name already taken).")
class ConflictError(Error):
    pass


def _fields(exception: errors.DomainError) -> dict[str, Any]:
    return {"message": exception.message, "code": exception.code, "field": exception.field}


class ValidationErrorHandler(
    strawberry.ExceptionHandler[errors.InvalidValueError, ValidationError]
):
    def handle(
        self, exception: errors.InvalidValueError, *, field: StrawberryField, info: strawberry.Info
    ) -> ValidationError:
        return ValidationError(**_fields(exception))


class NotFoundErrorHandler(strawberry.ExceptionHandler[errors.NotFoundError, NotFoundError]):
    def handle(
        self, exception: errors.NotFoundError, *, field: StrawberryField, info: strawberry.Info
    ) -> NotFoundError:
        return NotFoundError(**_fields(exception))


class PermissionErrorHandler(
    strawberry.ExceptionHandler[
        errors.ForbiddenError | errors.UnauthenticatedError, PermissionError
    ]
):
    def handle(
        self,
        exception: errors.ForbiddenError | errors.UnauthenticatedError,
        *,
        field: StrawberryField,
        info: strawberry.Info,
    ) -> PermissionError:
        return PermissionError(**_fields(exception))


class ConflictErrorHandler(strawberry.ExceptionHandler[errors.AlreadyExistsError, ConflictError]):
    def handle(
        self, exception: errors.AlreadyExistsError, *, field: StrawberryField, info: strawberry.Info
    ) -> ConflictError:
        return ConflictError(**_fields(exception))


EXCEPTION_HANDLERS = (
    ValidationErrorHandler(),
    NotFoundErrorHandler(),
    PermissionErrorHandler(),
    ConflictErrorHandler(),
)
