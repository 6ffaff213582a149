"""Driving the GraphQL API of the in-process app as the administrator of one project:
requests with a real Bearer token, the `data` and `errors` of their answers, and quick
seeding of rows through the service layer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.db import Database
from app.models import Role, Visibility
from app.services import auth, projects, users
from app.services.actor import OPERATOR, SCOPE_API, SCOPE_READ_API
from tests.clients import app_settings, bearer, graphql, serving

PROJECT_PATH = "lab"
ADMIN_USERNAME = "root"

ERROR_FIELDS = "__typename ... on Error { message code field }"

JOB_FIELDS = "id kind status progress { done total details } attempts error createdAt finishedAt"


@dataclass
class GraphQLApi:
    """The app serving one fresh database, an administrator's `api` token, and the
    private project `lab` that administrator owns."""

    client: httpx.AsyncClient
    database: Database
    admin_token: str
    project_path: str = PROJECT_PATH

    async def post(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """The whole JSON answer to a GraphQL request, which must not fail over HTTP."""
        response = await self.client.post(
            "/graphql",
            json={"query": document, "variables": variables or {}},
            headers=bearer(token or self.admin_token),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """The `data` of a request that must succeed without any GraphQL error."""
        return await graphql(self.client, document, token or self.admin_token, **(variables or {}))

    async def errors(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> list[dict[str, Any]]:
        """The GraphQL errors of a request that must fail, answered with HTTP 200."""
        body = await self.post(document, variables, token=token)
        assert body.get("errors"), body
        found: list[dict[str, Any]] = body["errors"]
        return found

    async def refusal(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> tuple[list[str], str | None]:
        """The `extensions.code` of every error a request got (none if it succeeded), and
        the `extensions.field` of the first one."""
        body = await self.post(document, variables, token=token)
        found = body.get("errors") or []
        codes = [str(error.get("extensions", {}).get("code")) for error in found]
        field = found[0].get("extensions", {}).get("field") if found else None
        return codes, None if field is None else str(field)

    async def model_id(self, name: str) -> str:
        """The global id of the project's model with this slug, as the API gives it."""
        found = await self.data(
            "query($path: String!, $name: String!) {"
            " project(path: $path) { model(name: $name) { id } } }",
            {"path": self.project_path, "name": name},
        )
        model = found["project"]["model"]
        assert model is not None, f"model {name!r} not found"
        return str(model["id"])

    async def add_user(self, username: str, *, role: Role | None = None) -> str:
        """A user with a personal access token of the `api` scope, a member of the project
        when `role` is given; returns the token's secret."""
        async with self.database.session() as session:
            user = await users.create_user(session, username=username)
            if role is not None:
                project = await projects.get_project(session, path=self.project_path)
                await projects.set_member(
                    session, project=project, user=user, role=role, actor=OPERATOR
                )
            _, secret = await auth.create_token(
                session, user=user, name=f"{username}-token", scopes=(SCOPE_API,)
            )
        return secret

    async def read_only_admin_token(self) -> str:
        """A second token of the administrator, limited to the `read_api` scope."""
        async with self.database.session() as session:
            admin = await users.get_user(session, username=ADMIN_USERNAME)
            _, secret = await auth.create_token(
                session, user=admin, name="read-only", scopes=(SCOPE_READ_API,)
            )
        return secret

    async def job(self, job_id: str) -> dict[str, Any] | None:
        found = await self.data(
            f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", {"id": job_id}
        )
        job: dict[str, Any] | None = found["job"]
        return job

    async def wait_for_job(self, job_id: str, *, seconds: float = 30.0) -> dict[str, Any]:
        """Poll a job until it is finished (succeeded or failed), for up to `seconds`;
        returns its last state."""
        deadline = time.monotonic() + seconds
        while True:
            job = await self.job(job_id)
            assert job is not None, f"job {job_id} is not readable"
            if job["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
                return job
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def graphql_api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    """The app on `database_url` with an administrator owning the private project `lab`."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            admin = await users.create_user(session, username=ADMIN_USERNAME, is_admin=True)
            _, secret = await auth.create_token(session, user=admin, name="admin-token")
            await projects.create_project(
                session,
                path=PROJECT_PATH,
                visibility=Visibility.PRIVATE,
                owner=admin,
                actor=OPERATOR,
            )
        async with serving(app_settings(tmp_path, database_url)) as client:
            yield GraphQLApi(client=client, database=database, admin_token=secret)
    finally:
        await database.dispose()


def edges_of(connection: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of a connection, in order."""
    return [edge["node"] for edge in connection["edges"]]


def typename(result: dict[str, Any]) -> str:
    return str(result["__typename"])
