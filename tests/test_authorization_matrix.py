"""Every route and every GraphQL field, asked by every role with every kind of token,
about its own project, another private project and a public one, answers exactly as
the permission table says. A route or field this test does not know fails it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from app.db import Database
from app.graphql.schema import schema
from app.main import create_app
from app.models import Role, Visibility
from app.services import auth, projects, users
from app.services.actor import OPERATOR
from tests.clients import app_settings, bearer, graphql, serving

# The permission table, written out independently of app/services/policy.py.
READ, MANAGE, OWN = Role.REPORTER, Role.MAINTAINER, Role.OWNER
ROLES: list[Role | str | None] = ["admin", *Role, None]  # None: a user in no project
TOKENS = [None, "read_api", "api"]
PROJECT_KINDS = ["own", "other", "public"]
PATHS = {"own": "own", "other": "other", "public": "open"}

OK, HIDDEN = "ok", "hidden"
UNAUTHENTICATED, FORBIDDEN, NOT_FOUND = "unauthenticated", "forbidden", "not_found"


@dataclass(frozen=True)
class Caller:
    role: Role | str | None
    token_kind: str | None
    token: str | None
    username: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def role_in(self, kind: str) -> Role | None:
        return self.role if kind == "own" and isinstance(self.role, Role) else None


def may_read(caller: Caller, kind: str) -> bool:
    if kind == "public":
        return True
    if caller.token is None:
        return False
    role = caller.role_in(kind)
    return caller.is_admin or (role is not None and role >= READ)


def expected_read(caller: Caller, kind: str) -> str:
    return OK if may_read(caller, kind) else HIDDEN


def expected_project_change(caller: Caller, kind: str, least: Role) -> str:
    if caller.token is None:
        return UNAUTHENTICATED
    if not may_read(caller, kind):
        return NOT_FOUND
    if caller.token_kind != "api":
        return FORBIDDEN
    role = caller.role_in(kind)
    if caller.is_admin or (role is not None and role >= least):
        return OK
    return FORBIDDEN


def expected_account_change(caller: Caller, *, admin_only: bool) -> str:
    if caller.token is None:
        return UNAUTHENTICATED
    if caller.token_kind != "api" or (admin_only and not caller.is_admin):
        return FORBIDDEN
    return OK


def outcome(result: dict[str, Any] | None) -> str:
    if result is None:
        return HIDDEN
    typename = result["__typename"]
    if typename == "PermissionError":
        return str(result["code"])
    if typename == "NotFoundError":
        return NOT_FOUND
    assert typename not in ("ValidationError", "ConflictError"), result
    return OK


RESULT = "{ __typename ... on Error { code message } }"


class World:
    """Users with every role in `own`, strangers owning `other` and `open`, and the
    admin's token for putting things back after a change succeeded."""

    def __init__(self, client: httpx.AsyncClient, database: Database) -> None:
        self.client = client
        self.database = database
        self.callers: list[Caller] = []
        self.admin_token = ""
        self.counter = itertools.count()

    async def build(self) -> None:
        async with self.database.session() as session:
            stranger = await users.create_user(session, username="stranger")
            own = await projects.create_project(session, path="own", actor=OPERATOR)
            await projects.create_project(session, path="other", owner=stranger, actor=OPERATOR)
            await projects.create_project(
                session,
                path="open",
                visibility=Visibility.PUBLIC,
                owner=stranger,
                actor=OPERATOR,
            )
            for name in ("newbie", "victim"):
                await users.create_user(session, username=name)
            for path in PATHS.values():
                victim = await users.get_user(session, username="victim")
                project = await projects.get_project(session, path=path)
                await projects.set_member(
                    session, project=project, user=victim, role=Role.DEVELOPER, actor=OPERATOR
                )
            for role in ROLES:
                username = role.name.lower() if isinstance(role, Role) else (role or "outsider")
                user = await users.create_user(session, username=username, is_admin=role == "admin")
                if isinstance(role, Role):
                    await projects.set_member(
                        session, project=own, user=user, role=role, actor=OPERATOR
                    )
                for token_kind in TOKENS:
                    token = None
                    if token_kind is not None:
                        _, token = await auth.create_token(
                            session, user=user, name=token_kind, scopes=[token_kind]
                        )
                    if role == "admin" and token_kind == "api":
                        self.admin_token = token or ""
                    self.callers.append(Caller(role, token_kind, token, username))

    async def ask(self, query: str, caller: Caller | None = None, **variables: Any) -> Any:
        token = caller.token if caller else self.admin_token
        return await graphql(self.client, query, token, **variables)


# --- The operations: each returns the outcome it saw and puts back what it changed. ---

ProjectOperation = Callable[[World, Caller, str], Awaitable[str]]
AccountOperation = Callable[[World, Caller], Awaitable[str]]


async def query_project(world: World, caller: Caller, path: str) -> str:
    data = await world.ask("query($p: String!) { project(path: $p) { path } }", caller, p=path)
    return OK if data["project"] else HIDDEN


async def query_projects(world: World, caller: Caller, path: str) -> str:
    data = await world.ask("{ projects { path } }", caller)
    return OK if path in [p["path"] for p in data["projects"]] else HIDDEN


async def query_project_members(world: World, caller: Caller, path: str) -> str:
    query = "query($p: String!) { project(path: $p) { members { role } viewerRole } }"
    data = await world.ask(query, caller, p=path)
    return OK if data["project"] and data["project"]["members"] else HIDDEN


async def project_update(world: World, caller: Caller, path: str) -> str:
    mutation = f"""mutation($p: String!) {{
        projectUpdate(input: {{path: $p, description: "changed"}}) {RESULT} }}"""
    return outcome((await world.ask(mutation, caller, p=path))["projectUpdate"])


async def project_visibility_change(world: World, caller: Caller, path: str) -> str:
    mutation = f"""mutation($p: String!, $v: Visibility!) {{
        projectUpdate(input: {{path: $p, visibility: $v}}) {RESULT} }}"""
    current = "PUBLIC" if path == PATHS["public"] else "PRIVATE"
    flipped = "PRIVATE" if current == "PUBLIC" else "PUBLIC"
    seen = outcome((await world.ask(mutation, caller, p=path, v=flipped))["projectUpdate"])
    if seen == OK:
        await world.ask(mutation, p=path, v=current)
    return seen


async def member_set(world: World, caller: Caller, path: str) -> str:
    mutation = f"""mutation($p: String!) {{
        memberSet(input: {{project: $p, username: "newbie", role: DEVELOPER}}) {RESULT} }}"""
    seen = outcome((await world.ask(mutation, caller, p=path))["memberSet"])
    if seen == OK:
        await world.ask(
            'mutation($p: String!) { memberRemove(input: {project: $p, username: "newbie"}) '
            f"{RESULT} }}",
            p=path,
        )
    return seen


async def member_remove(world: World, caller: Caller, path: str) -> str:
    mutation = f"""mutation($p: String!) {{
        memberRemove(input: {{project: $p, username: "victim"}}) {RESULT} }}"""
    seen = outcome((await world.ask(mutation, caller, p=path))["memberRemove"])
    if seen == OK:
        await world.ask(
            "mutation($p: String!) { memberSet(input: "
            f'{{project: $p, username: "victim", role: DEVELOPER}}) {RESULT} }}',
            p=path,
        )
    return seen


async def user_create(world: World, caller: Caller) -> str:
    mutation = f"""mutation($u: String!) {{ userCreate(input: {{username: $u}}) {RESULT} }}"""
    return outcome(
        (await world.ask(mutation, caller, u=f"made{next(world.counter)}"))["userCreate"]
    )


async def project_create(world: World, caller: Caller) -> str:
    mutation = f"""mutation($p: String!) {{ projectCreate(input: {{path: $p}}) {RESULT} }}"""
    data = await world.ask(mutation, caller, p=f"made{next(world.counter)}")
    return outcome(data["projectCreate"])


async def token_create(world: World, caller: Caller) -> str:
    mutation = f"""mutation {{ tokenCreate(input: {{name: "more"}}) {RESULT} }}"""
    return outcome((await world.ask(mutation, caller))["tokenCreate"])


async def token_revoke(world: World, caller: Caller) -> str:
    async with world.database.session() as session:
        user = await users.get_user(session, username=caller.username)
        token, _ = await auth.create_token(session, user=user, name="to revoke")
    mutation = f"""mutation($id: Int!) {{ tokenRevoke(id: $id) {RESULT} }}"""
    return outcome((await world.ask(mutation, caller, id=token.id))["tokenRevoke"])


async def query_viewer(world: World, caller: Caller) -> str:
    data = await world.ask("{ viewer { user { username } tokens { name } } }", caller)
    return OK if data["viewer"] else HIDDEN


async def query_version(world: World, caller: Caller) -> str:
    return OK if (await world.ask("{ version }", caller))["version"] else HIDDEN


# Each GraphQL field, with its operation and the answer the table gives.
PROJECT_FIELDS: dict[str, tuple[ProjectOperation, Callable[[Caller, str], str]]] = {
    "Query.project": (query_project, expected_read),
    "Query.projects": (query_projects, expected_read),
    "Project.members": (query_project_members, expected_read),
    "Mutation.projectUpdate": (
        project_update,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.projectUpdate(visibility)": (
        project_visibility_change,
        lambda caller, kind: expected_project_change(caller, kind, OWN),
    ),
    "Mutation.memberSet": (
        member_set,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.memberRemove": (
        member_remove,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
}
ACCOUNT_FIELDS: dict[str, tuple[AccountOperation, Callable[[Caller], str]]] = {
    "Query.version": (query_version, lambda caller: OK),
    "Query.viewer": (query_viewer, lambda caller: OK if caller.token else HIDDEN),
    "Mutation.userCreate": (
        user_create,
        lambda caller: expected_account_change(caller, admin_only=True),
    ),
    "Mutation.projectCreate": (
        project_create,
        lambda caller: expected_account_change(caller, admin_only=False),
    ),
    "Mutation.tokenCreate": (
        token_create,
        lambda caller: expected_account_change(caller, admin_only=False),
    ),
    "Mutation.tokenRevoke": (
        token_revoke,
        lambda caller: expected_account_change(caller, admin_only=False),
    ),
}
# Every route, with a request that everyone may make (GraphQL's data is guarded by
# the fields above; GET /graphql serves GraphiQL to a browser).
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {},
    ("GET", "/readyz"): {},
    ("GET", "/graphql"): {"headers": {"Accept": "text/html"}},
    ("POST", "/graphql"): {"json": {"query": "{ version }"}},
}


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/unused.db"))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served == set(ROUTES)


def test_every_graphql_field_is_in_the_table() -> None:
    root_fields = {
        f"{type_name}.{field.name}"
        for type_name, root in (("Query", schema.query), ("Mutation", schema.mutation))
        for field in root.__strawberry_definition__.fields  # type: ignore[union-attr]
    }
    known = {name.split("(")[0] for name in [*PROJECT_FIELDS, *ACCOUNT_FIELDS]}
    camel = {_camel(name) for name in root_fields}
    assert camel == {name for name in known if not name.startswith("Project.")}


def _camel(qualified: str) -> str:
    type_name, field = qualified.split(".")
    head, *rest = field.split("_")
    return f"{type_name}.{head}{''.join(part.title() for part in rest)}"


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with serving(app_settings(tmp_path, database_url)) as client:
        database = Database(database_url)
        try:
            built = World(client, database)
            await built.build()
            yield built
        finally:
            await database.dispose()


async def test_each_role_and_token_gets_what_the_table_says(world: World) -> None:
    mismatches = []
    for caller in world.callers:
        for field, (operation, expect) in PROJECT_FIELDS.items():
            for kind in PROJECT_KINDS:
                seen = await operation(world, caller, PATHS[kind])
                wanted = expect(caller, kind)
                if seen != wanted:
                    mismatches.append((field, caller.role, caller.token_kind, kind, seen, wanted))
        for field, (account_operation, account_expect) in ACCOUNT_FIELDS.items():
            seen = await account_operation(world, caller)
            wanted = account_expect(caller)
            if seen != wanted:
                mismatches.append((field, caller.role, caller.token_kind, "-", seen, wanted))
        for (method, path), request in ROUTES.items():
            headers = {**request.get("headers", {}), **bearer(caller.token)}
            response = await world.client.request(
                method, path, headers=headers, json=request.get("json")
            )
            if response.status_code != 200:
                mismatches.append(
                    (path, caller.role, caller.token_kind, "-", response.status_code, 200)
                )
    assert mismatches == []
