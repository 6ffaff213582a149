"""Failures, as a client sees them.

Mutations: services raise domain errors; the exception handlers below turn them into the
matching member of the mutation's result union (ValidationError, NotFoundError,
PermissionError, ConflictError), each with a message, a code and the input field. The
code is the one ``extensions.code`` carries for the same error (below): one vocabulary.

Everything else is an entry of the response's `errors`, whose ``extensions.code`` says
what kind: a domain error in a query (a bad filter, cursor or id) keeps its message, with
VALIDATION_ERROR, NOT_FOUND, FORBIDDEN, UNAUTHENTICATED or CONFLICT and the argument in
``extensions.field`` (connections are nullable, so a bad filter, cursor or page size
nulls that connection only, never the object above it); a mutation's input takes ids as
plain `ID` strings, so a malformed one is the mutation's ValidationError
(app/graphql/nodes.py); a document that does not parse or validate, GRAPHQL_VALIDATION_FAILED;
one that asks too much, QUERY_TOO_COMPLEX (app/graphql/limits.py). Anything unexpected is
logged with its traceback and reaches the client only as "Internal server error" with
INTERNAL_SERVER_ERROR: never a stack trace or an exception's text. A database that cannot
be reached answers SERVICE_UNAVAILABLE, with HTTP status 503 (app/database_outage.py). The
client's mistakes are logged at info, in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.relay.types import GlobalIDValueError
from strawberry.types.execution import ExecutionResult
from strawberry.types.field import StrawberryField

from app import errors
from app.database_outage import CLIENT_MESSAGE, is_database_outage


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
    return {"message": exception.message, "code": code_of(exception), "field": exception.field}


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


_CODES: dict[type[errors.DomainError], str] = {
    errors.InvalidValueError: "VALIDATION_ERROR",
    errors.NotFoundError: "NOT_FOUND",
    errors.ForbiddenError: "FORBIDDEN",
    errors.UnauthenticatedError: "UNAUTHENTICATED",
    errors.AlreadyExistsError: "CONFLICT",
}
INTERNAL = "INTERNAL_SERVER_ERROR"


def code_of(exception: errors.DomainError) -> str:
    """The one code of a domain error, in a union's `code` and in `extensions.code` alike."""
    return next(code for kind, code in _CODES.items() if isinstance(exception, kind))


# The database is unreachable: the response's HTTP status is 503 (app/graphql/endpoint.py).
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
TOKEN_LIMIT_MESSAGE = "tokens. Parsing aborted"


def present(error: GraphQLError) -> GraphQLError:
    """The error as the client gets it (see the module's description)."""
    original = error.original_error
    if isinstance(original, errors.DomainError):
        return _copy(error, original.message, {"code": code_of(original), "field": original.field})
    if isinstance(original, GlobalIDValueError):
        return _copy(error, f"Not a valid id: {original}", {"code": "VALIDATION_ERROR"})
    if original is not None and is_database_outage(original):
        return _copy(error, CLIENT_MESSAGE, {"code": SERVICE_UNAVAILABLE})
    if error.extensions and "code" in error.extensions:
        return error
    if original is None or error.path is None:
        # The document or its variables: the client's to fix, and safe to show.
        too_long = TOKEN_LIMIT_MESSAGE in error.message
        kind = "QUERY_TOO_COMPLEX" if too_long else "GRAPHQL_VALIDATION_FAILED"
        return _copy(error, error.message, {"code": kind})
    return _copy(error, "Internal server error", {"code": INTERNAL})


def answers_unavailable(response_data: object) -> bool:
    """Whether a response's errors say the database is unreachable (it is then a 503)."""
    entries = response_data.get("errors") if isinstance(response_data, dict) else None
    return any(
        (entry.get("extensions") or {}).get("code") == SERVICE_UNAVAILABLE
        for entry in entries or ()
    )


def _copy(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


# The codes of the client's own mistakes: worth a line at info, not an alarm.
_CLIENT_MISTAKES = frozenset({*_CODES.values(), "GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COMPLEX"})
logger = logging.getLogger("strawberry.execution")


def log(error: GraphQLError) -> None:
    """Log an error as it is, before it is presented: the client's mistakes (a document
    that does not parse, validate or fit the limits; a domain error) at info without a
    traceback; anything else at error, with its traceback."""
    code = (present(error).extensions or {}).get("code")
    if code in _CLIENT_MISTAKES:
        logger.info("%s (%s)", error.message, code)
    else:
        logger.error(error, exc_info=error.original_error)


class ErrorPresentation(SchemaExtension):
    """Rewrites the response's errors once the operation is done (its originals have
    been logged by then)."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            result.errors = [present(error) for error in result.errors]
