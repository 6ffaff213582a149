"""One MLflow API call: the caller, the project it addresses, and typed access to the
request's parameters (query string for GET, JSON body otherwise).

The project is MLflow's workspace: the tracking URI's ``/projects/<project>/mlflow`` prefix
or the ``X-MLFLOW-WORKSPACE`` header (what ``mlflow.set_workspace`` sends) names it, and
with neither it is ``default``, MLflow's default workspace. A prefix and a header naming
different projects is INVALID_PARAMETER_VALUE; a blank header is no header, as in MLflow.

A body is read as `app.http_bodies` reads every body: declared ``application/json`` (a POST
always), within the endpoint's size limit and the read deadline, nested at most 64 levels,
with no NUL or lone surrogate in any string. Integers are signed 64-bit, the range every
database column of ours holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app import http_bodies
from app.db import Database
from app.errors import InvalidValueError
from app.models import LifecycleState, Project
from app.search.paging import Page
from app.services import projects, validation
from app.services.actor import Actor
from app.services.policy import Operation
from app.services.projects import DEFAULT_PROJECT_PATH

# The header MLflow's client sends the active workspace in (`mlflow.set_workspace`).
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"

# A handler reads its call and returns MLflow's response body.
Handler = Callable[["Call"], Awaitable[dict[str, Any]]]
# (HTTP method, path under /api/2.0 and /ajax-api/2.0, handler)
Endpoint = tuple[str, str, Handler]


class MissingParameterError(InvalidValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Missing value for required parameter '{name}'. See the API docs for more "
            "information about request parameters.",
            field=name,
        )


@dataclass
class Call:
    request: Request
    database: Database
    actor: Actor | None
    params: dict[str, Any]

    @staticmethod
    async def read_params(request: Request, *, body_limit: int) -> dict[str, Any]:
        """The query string of a GET, the JSON object of the body otherwise."""
        if request.method == "GET":
            params: dict[str, Any] = {}
            for key, value in request.query_params.multi_items():
                if key in params:
                    existing = params[key]
                    params[key] = (
                        [*existing, value] if isinstance(existing, list) else [existing, value]
                    )
                else:
                    params[key] = value
            http_bodies.refuse_unstorable(params)
            return params
        http_bodies.require_json(request)
        body = await http_bodies.read_body(request, limit=body_limit)
        parsed = http_bodies.parse_json(body) if body.strip() else {}
        if not isinstance(parsed, dict):
            raise InvalidValueError("The request body must be a JSON object")
        return parsed

    @property
    def project_path(self) -> str:
        """The path of the project the call addresses (see the module's docstring)."""
        prefixed = self.request.path_params.get("project")
        workspace = self.request.headers.get(WORKSPACE_HEADER, "").strip()
        if prefixed is not None and workspace and workspace != prefixed:
            raise InvalidValueError(
                f"The tracking URI names project '{prefixed}' but the {WORKSPACE_HEADER} "
                f"header names workspace '{workspace}': a workspace is a project, name it once",
                field="workspace",
            )
        return str(prefixed or workspace or DEFAULT_PROJECT_PATH)

    async def project(self, session: AsyncSession, operation: Operation) -> Project:
        """The project the call addresses, if the caller may do `operation` there: READ
        to find what the call names (the service called next checks its own change), or
        UPLOAD before an artifact's body streams."""
        return await projects.find_project(
            session, actor=self.actor, path=self.project_path, operation=operation
        )

    # --- typed parameters ---

    def _single(self, name: str) -> Any:
        """A scalar parameter; a repeated one (a list) gives its first value."""
        value = self.params.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        return None if value == "" else value

    def string(
        self, name: str, *, required: bool = False, default: str | None = None
    ) -> str | None:
        value = self._single(name)
        if value is None:
            if required:
                raise MissingParameterError(name)
            return default
        if not isinstance(value, str):
            raise InvalidValueError(
                f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: "
                "expected a string",
                field=name,
            )
        return value

    def required(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        return value

    def integer(
        self, name: str, *, default: int | None = None, required: bool = False
    ) -> int | None:
        value = self._single(name)
        if value is None:
            if required:
                raise MissingParameterError(name)
            return default
        return validation.int64(value, field=name)

    def number(self, name: str, *, required: bool = False) -> float | None:
        """A double as MLflow sends it: a JSON number, or "NaN"/"Infinity"/"-Infinity"."""
        value = self._single(name)
        if value is None:
            if required:
                raise MissingParameterError(name)
            return None
        return parse_double(name, value)

    def page(self, *, default: int, threshold: int) -> Page:
        """The page asked for by `max_results` and `page_token`."""
        return Page.requested(
            self.integer("max_results"),
            self.string("page_token"),
            default=default,
            threshold=threshold,
        )

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._single(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidValueError(
            f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: "
            "expected a boolean",
            field=name,
        )

    def strings(self, name: str) -> list[str]:
        value = self.params.get(name)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in values):
            raise InvalidValueError(
                f"Invalid value for parameter '{name}' supplied: expected a list of strings",
                field=name,
            )
        return values

    def objects(self, name: str) -> list[dict[str, Any]]:
        value = self.params.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise InvalidValueError(
                f"Invalid value for parameter '{name}' supplied: expected a list of objects",
                field=name,
            )
        return value

    def key_values(self, name: str) -> list[tuple[str, str]]:
        """A list of {key, value} entries (tags, params)."""
        pairs = []
        for entry in self.objects(name):
            key, value = entry.get("key"), entry.get("value", "")
            if not isinstance(key, str) or not key:
                raise MissingParameterError(f"{name}.key")
            pairs.append((key, value_string(f"{name}.value", value)))
        return pairs


def value_string(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidValueError(f"Invalid value for parameter '{name}': expected a string", field=name)


def parse_double(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidValueError(f"Invalid value for parameter '{name}': expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        special = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf}
        if value.lower() in special:
            return special[value.lower()]
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidValueError(
        f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: expected a number",
        field=name,
    )


VIEW_TYPES = {
    "ACTIVE_ONLY": (LifecycleState.ACTIVE,),
    "DELETED_ONLY": (LifecycleState.DELETED,),
    "ALL": (LifecycleState.ACTIVE, LifecycleState.DELETED),
}


def view_states(call: Call, name: str) -> tuple[LifecycleState, ...]:
    """MLflow's ViewType (by name, or its number 1-3) as lifecycle states."""
    value = call.params.get(name) or "ACTIVE_ONLY"
    if isinstance(value, list):
        value = value[0]
    by_number = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}
    value = by_number.get(str(value), str(value))
    if value not in VIEW_TYPES:
        raise InvalidValueError(
            f"Invalid value for {name}: {value}; one of {', '.join(VIEW_TYPES)}", field=name
        )
    return VIEW_TYPES[value]
