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
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import BaseRoute, Mount, Route
from strawberry import relay

from app.db import Database
from app.graphql.schema import schema
from app.main import create_app
from app.models import Role, Visibility, WebhookStatus
from app.models import Webhook as WebhookRow
from app.services import (
    auth,
    candidates,
    logged_models,
    models,
    projects,
    users,
    versions,
    webhooks,
)
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from app.settings import Settings
from tests.clients import app_settings, bearer, graphql, serving

# The permission table, written out independently of app/services/policy.py.
READ, DEVELOPER, MANAGE, OWN = Role.REPORTER, Role.DEVELOPER, Role.MAINTAINER, Role.OWNER
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


def expected_change_by_id(caller: Caller, kind: str, least: Role) -> str:
    """A change to an object named by its global id: one the caller may not read is
    answered as a missing one, signed in or not, so no id tells whether it exists."""
    if not may_read(caller, kind):
        return NOT_FOUND
    return expected_project_change(caller, kind, least)


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
        return str(result["code"]).lower()
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
        # Per project path: MLflow ids of an experiment, a run, and ones to delete.
        self.mlflow: dict[str, dict[str, str]] = {}
        # Per project path: global ids of the GraphQL model, its candidates (one with a
        # metric, one to promote), its version and a job.
        self.nodes: dict[str, dict[str, str]] = {}

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
                    # Without a token every role is the same anonymous caller: ask once.
                    if token_kind is not None or role is None:
                        self.callers.append(Caller(role, token_kind, token, username))
            for path in PATHS.values():
                self.mlflow[path] = await _mlflow_objects(session, path)
                await _graphql_objects(session, path)
        for path in PATHS.values():
            self.nodes[path] = await self._global_ids(path)

    async def ask(self, query: str, caller: Caller | None = None, **variables: Any) -> Any:
        token = caller.token if caller else self.admin_token
        return await graphql(self.client, query, token, **variables)

    async def _global_ids(self, path: str) -> dict[str, str]:
        query = f"""query($p: String!) {{ project(path: $p) {{ model(name: "{GRAPHQL_MODEL}") {{
            id latestVersion {{ id }}
            candidates(filter: {{hasVersion: false}}) {{ edges {{ node {{ id name }} }} }}
        }} }} }}"""
        model = (await self.ask(query, p=path))["project"]["model"]
        runs = {edge["node"]["name"]: edge["node"]["id"] for edge in model["candidates"]["edges"]}
        started = await mutate(self, None, "packageTypesMigrate", {"project": path}, JOB)
        return {
            "model": model["id"],
            "version": model["latestVersion"]["id"],
            "candidate": runs[CANDIDATE],
            "promotable": runs[PROMOTABLE],
            "job": started["job"]["id"],
        }


GRAPHQL_MODEL, DESCRIPTION, ALIAS = "graphql", "As built.", "stable"
CANDIDATE, PROMOTABLE = "trained", "promotable"
# The candidate's metric point, as the service logs it and as GraphQL takes it.
POINT = MetricPoint("loss", 1.0, timestamp=1)
METRIC = {"name": "loss", "value": 1.0, "step": 0, "timestamp": "1970-01-01T00:00:00.001+00:00"}


async def _graphql_objects(session: AsyncSession, path: str) -> None:
    """The model the GraphQL fields act on: a candidate with a metric, one that fresh
    versions promote (it is free again once they are deleted), and a version (with a
    candidate of its own) holding an alias."""
    project = await projects.get_project(session, path=path)
    model = await models.create_model(
        session,
        project=project,
        display_name=GRAPHQL_MODEL,
        description=DESCRIPTION,
        actor=OPERATOR,
    )
    run = await candidates.create_candidate(session, model=model, name=CANDIDATE, actor=OPERATOR)
    await candidates.log_batch(session, candidate=run, metrics=[POINT], actor=OPERATOR)
    await candidates.create_candidate(session, model=model, name=PROMOTABLE, actor=OPERATOR)
    version = await versions.create_version(
        session, model=model, description=DESCRIPTION, actor=OPERATOR
    )
    await versions.set_alias(session, model=model, alias=ALIAS, version=version, actor=OPERATOR)


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


async def _stand_in(world: World, caller: Caller, path: str) -> str:
    """A new project standing in for `path`, for probes that must not change it: the
    visibility of `path`, the caller holding the role they hold there."""
    kind = next(kind for kind, shown in PATHS.items() if shown == path)
    stand_in = f"doomed{next(world.counter)}"
    async with world.database.session() as session:
        project = await projects.create_project(
            session,
            path=stand_in,
            visibility=Visibility.PUBLIC if kind == "public" else Visibility.PRIVATE,
            actor=OPERATOR,
        )
        role = caller.role_in(kind)
        if role is not None:
            user = await users.get_user(session, username=caller.username)
            await projects.set_member(
                session, project=project, user=user, role=role, actor=OPERATOR
            )
    return stand_in


async def project_delete(world: World, caller: Caller, path: str) -> str:
    """Deleting a project ends it, so each probe deletes a stand-in made for it."""
    stand_in = await _stand_in(world, caller, path)
    mutation = f"""mutation($p: String!) {{
        projectDelete(input: {{path: $p}}) {RESULT} }}"""
    return outcome((await world.ask(mutation, caller, p=stand_in))["projectDelete"])


async def project_import_mlflow(world: World, caller: Caller, path: str) -> str:
    """One import into a project at a time, so each probe imports into a stand-in (from
    a source nobody answers at: the job started fails, changing nothing)."""
    stand_in = await _stand_in(world, caller, path)
    mutation = f"""mutation($p: String!) {{
        projectImportMlflow(input: {{project: $p, sourceUri: "http://127.0.0.1:9"}})
        {RESULT} }}"""
    return outcome((await world.ask(mutation, caller, p=stand_in))["projectImportMlflow"])


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


# The GraphQL model's objects: lookups by global id, changes through mutations whose
# `input` argument is of the type `<Field>Input`.
CREATED = "{ __typename ... on Error { code message } ... on Node { id } }"
JOB = "{ __typename ... on Error { code message } ... on JobStarted { job { id } } }"


async def mutate(
    world: World, caller: Caller | None, field: str, input: dict[str, Any], result: str = RESULT
) -> dict[str, Any]:
    """The result of `field(input:)`, asked by `caller` (the admin if None)."""
    mutation = (
        f"mutation($i: {field[0].upper()}{field[1:]}Input!) {{ {field}(input: $i) {result} }}"
    )
    answer: dict[str, Any] = (await world.ask(mutation, caller, i=input))[field]
    return answer


async def by_admin(
    world: World, field: str, input: dict[str, Any], result: str = RESULT
) -> dict[str, Any]:
    """A change the admin makes to set the stage or put things back; it must succeed."""
    answer = await mutate(world, None, field, input, result)
    assert outcome(answer) == OK, answer
    return answer


def lookup(field: str, key: str) -> ProjectOperation:
    """`field(id:)` asked about the GraphQL model's object `key` of a project."""

    async def operation(world: World, caller: Caller, path: str) -> str:
        query = f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}"
        data = await world.ask(query, caller, id=world.nodes[path][key])
        return OK if data[field] else HIDDEN

    return operation


async def query_nodes(world: World, caller: Caller, path: str) -> str:
    ids = list(world.nodes[path].values())
    data = await world.ask("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", caller, ids=ids)
    found = [node is not None for node in data["nodes"]]
    return OK if all(found) else HIDDEN if not any(found) else f"some hidden: {data['nodes']}"


def change(field: str, input: Callable[[dict[str, str], str], dict[str, Any]]) -> ProjectOperation:
    """`field` with the input `input(ids, path)` makes, for changes with nothing to put
    back: they write what is already there (a logged metric point: the same one again) or
    start a job."""

    async def operation(world: World, caller: Caller, path: str) -> str:
        return outcome(await mutate(world, caller, field, input(world.nodes[path], path)))

    return operation


async def model_create(world: World, caller: Caller, path: str) -> str:
    input = {"project": path, "displayName": f"made{next(world.counter)}"}
    created = await mutate(world, caller, "modelCreate", input, CREATED)
    seen = outcome(created)
    if seen == OK:
        await by_admin(world, "modelDelete", {"id": created["id"]})
    return seen


async def model_delete(world: World, caller: Caller, path: str) -> str:
    input = {"project": path, "displayName": f"doomed{next(world.counter)}"}
    fresh = await by_admin(world, "modelCreate", input, CREATED)
    seen = outcome(await mutate(world, caller, "modelDelete", {"id": fresh["id"]}))
    if seen != OK:
        await by_admin(world, "modelDelete", {"id": fresh["id"]})
    return seen


def promotion(ids: dict[str, str]) -> dict[str, str]:
    """A new version of the GraphQL model, promoting its promotable candidate."""
    return {"modelId": ids["model"], "candidateId": ids["promotable"]}


async def model_version_create(world: World, caller: Caller, path: str) -> str:
    input = promotion(world.nodes[path])
    created = await mutate(world, caller, "modelVersionCreate", input, CREATED)
    seen = outcome(created)
    if seen == OK:
        await by_admin(world, "modelVersionDelete", {"id": created["id"]})
    return seen


async def model_version_delete(world: World, caller: Caller, path: str) -> str:
    fresh = await by_admin(world, "modelVersionCreate", promotion(world.nodes[path]), CREATED)
    seen = outcome(await mutate(world, caller, "modelVersionDelete", {"id": fresh["id"]}))
    if seen != OK:
        await by_admin(world, "modelVersionDelete", {"id": fresh["id"]})
    return seen


async def alias_delete(world: World, caller: Caller, path: str) -> str:
    ids = world.nodes[path]
    await by_admin(world, "aliasSet", {"versionId": ids["version"], "alias": "doomed"})
    input = {"modelId": ids["model"], "alias": "doomed"}
    seen = outcome(await mutate(world, caller, "aliasDelete", input))
    if seen != OK:
        await by_admin(world, "aliasDelete", input)
    return seen


async def metadata_delete(world: World, caller: Caller, path: str) -> str:
    model_id = world.nodes[path]["model"]
    entry = {"name": "doomed", "value": "1"}
    await by_admin(world, "modelUpdate", {"id": model_id, "metadata": [entry]})
    input = {"ownerId": model_id, "names": ["doomed"]}
    return outcome(await mutate(world, caller, "metadataDelete", input))


async def candidate_create(world: World, caller: Caller, path: str) -> str:
    input = {"modelId": world.nodes[path]["model"]}
    created = await mutate(world, caller, "candidateCreate", input, CREATED)
    seen = outcome(created)
    if seen == OK:
        await by_admin(world, "candidateDelete", {"id": created["id"]})
    return seen


async def candidate_delete(world: World, caller: Caller, path: str) -> str:
    input = {"modelId": world.nodes[path]["model"]}
    fresh = await by_admin(world, "candidateCreate", input, CREATED)
    seen = outcome(await mutate(world, caller, "candidateDelete", {"id": fresh["id"]}))
    if seen != OK:
        await by_admin(world, "candidateDelete", {"id": fresh["id"]})
    return seen


async def _webhook_with_a_delivery(world: World, path: str) -> tuple[str, str]:
    """Global ids of a fresh hook of the project, made by the admin, and of a delivery
    it got (the hook is disabled at once, so nothing is ever sent)."""
    async with world.database.session() as session:
        project = await projects.get_project(session, path=path)
        hook = await webhooks.create_webhook(
            session,
            project=project,
            name="hook",
            url="http://8.8.8.8:9/hook",
            events=["model_version_alias.deleted"],
            settings=Settings(),
            actor=OPERATOR,
        )
        model = await models.get_model(session, project=project, name=GRAPHQL_MODEL)
        await webhooks.emit(session, webhooks.alias_deleted(model, "gone"))
        await webhooks.update_webhook(
            session,
            webhook=hook,
            status=WebhookStatus.DISABLED,
            settings=Settings(),
            actor=OPERATOR,
        )
        [delivery] = await webhooks.get_deliveries(session, webhook_id=hook.id)
    return relay.to_base64("Webhook", hook.id), relay.to_base64("WebhookDelivery", delivery.id)


def webhook_change(
    field: str, input: Callable[[str, str], dict[str, Any]], result: str = RESULT
) -> ProjectOperation:
    """`field` on a fresh hook (`input(hook id, delivery id)`), which goes afterwards."""

    async def operation(world: World, caller: Caller, path: str) -> str:
        hook_id, delivery_id = await _webhook_with_a_delivery(world, path)
        seen = outcome(await mutate(world, caller, field, input(hook_id, delivery_id), result))
        async with world.database.session() as session:
            hook = await session.get(WebhookRow, int(relay.from_base64(hook_id)[1]))
            if hook is not None:
                await webhooks.delete_webhook(session, webhook=hook, actor=OPERATOR)
        return seen

    return operation


async def webhook_create(world: World, caller: Caller, path: str) -> str:
    input = {
        "project": path,
        "name": "hook",
        "url": "http://8.8.8.8:9/hook",
        "events": ["model_version.created"],
        "signed": False,
        "status": "DISABLED",
    }
    return outcome(await mutate(world, caller, "webhookCreate", input))


async def query_project_webhooks(world: World, caller: Caller, path: str) -> str:
    answer = await world.client.post(
        "/graphql",
        json={"query": f'{{ project(path: "{path}") {{ webhooks {{ id }} }} }}'},
        headers=bearer(caller.token),
    )
    body = answer.json()
    if body["data"]["project"] is None:
        return NOT_FOUND if caller.token else UNAUTHENTICATED
    if body.get("errors"):
        return str(body["errors"][0]["extensions"]["code"]).lower()
    return OK


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
    "Mutation.projectDelete": (
        project_delete,
        lambda caller, kind: expected_project_change(caller, kind, OWN),
    ),
    "Mutation.projectImportMlflow": (
        project_import_mlflow,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.memberSet": (
        member_set,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.memberRemove": (
        member_remove,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Query.node": (lookup("node", "model"), expected_read),
    "Query.nodes": (query_nodes, expected_read),
    "Query.model": (lookup("model", "model"), expected_read),
    "Query.modelVersion": (lookup("modelVersion", "version"), expected_read),
    "Query.candidate": (lookup("candidate", "candidate"), expected_read),
    "Query.job": (lookup("job", "job"), expected_read),
    "Mutation.modelCreate": (
        model_create,
        lambda caller, kind: expected_project_change(caller, kind, DEVELOPER),
    ),
    "Mutation.modelUpdate": (
        change("modelUpdate", lambda ids, path: {"id": ids["model"], "description": DESCRIPTION}),
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.modelDelete": (
        model_delete,
        lambda caller, kind: expected_change_by_id(caller, kind, MANAGE),
    ),
    "Mutation.modelVersionCreate": (
        model_version_create,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.modelVersionUpdate": (
        change(
            "modelVersionUpdate",
            lambda ids, path: {"id": ids["version"], "description": DESCRIPTION},
        ),
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.modelVersionDelete": (
        model_version_delete,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.aliasSet": (
        change("aliasSet", lambda ids, path: {"versionId": ids["version"], "alias": ALIAS}),
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.aliasDelete": (
        alias_delete,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.candidateCreate": (
        candidate_create,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.candidateUpdate": (
        change("candidateUpdate", lambda ids, path: {"id": ids["candidate"], "name": CANDIDATE}),
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.candidateLogMetrics": (
        change(
            "candidateLogMetrics", lambda ids, path: {"id": ids["candidate"], "metrics": [METRIC]}
        ),
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.candidateDelete": (
        candidate_delete,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.metadataDelete": (
        metadata_delete,
        lambda caller, kind: expected_change_by_id(caller, kind, DEVELOPER),
    ),
    "Mutation.packageTypesMigrate": (
        change("packageTypesMigrate", lambda ids, path: {"project": path}),
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Project.webhooks": (
        query_project_webhooks,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.webhookCreate": (
        webhook_create,
        lambda caller, kind: expected_project_change(caller, kind, MANAGE),
    ),
    "Mutation.webhookUpdate": (
        webhook_change("webhookUpdate", lambda hook, delivery: {"id": hook, "description": "d"}),
        lambda caller, kind: expected_change_by_id(caller, kind, MANAGE),
    ),
    "Mutation.webhookDelete": (
        webhook_change("webhookDelete", lambda hook, delivery: {"id": hook}),
        lambda caller, kind: expected_change_by_id(caller, kind, MANAGE),
    ),
    "Mutation.webhookTest": (
        webhook_change("webhookTest", lambda hook, delivery: {"id": hook}),
        lambda caller, kind: expected_change_by_id(caller, kind, MANAGE),
    ),
    "Mutation.webhookDeliveryRedeliver": (
        webhook_change("webhookDeliveryRedeliver", lambda hook, delivery: {"id": delivery}),
        lambda caller, kind: expected_change_by_id(caller, kind, MANAGE),
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
# --- The MLflow surface: every endpoint, the least action it needs, and a request. ---


async def _mlflow_objects(session: AsyncSession, path: str) -> dict[str, str]:
    project = await projects.get_project(session, path=path)
    ids: dict[str, str] = {}
    for label in ("experiment", "victim"):
        model = await models.create_model(
            session, project=project, display_name=label, actor=OPERATOR
        )
        ids[label] = str(model.iid)
        run = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        await candidates.log_batch(
            session,
            candidate=run,
            metrics=[MetricPoint("loss", 1.0, timestamp=1)],
            params={"lr": "0.1"},
            actor=OPERATOR,
        )
        ids[f"{label}_run"] = run.eid
        ids[f"{label}_run_iid"] = str(run.iid)
        if label == "victim":
            await models.register_model(session, model=model, actor=OPERATOR)
        else:
            logged = await logged_models.create_logged_model(
                session, model=model, name="lm", source_candidate=run, actor=OPERATOR
            )
            ids["logged_model"] = logged.eid
    registered = await models.create_model(
        session, project=project, display_name="registered", registered=True, actor=OPERATOR
    )
    promoted = await candidates.create_candidate(session, model=registered, actor=OPERATOR)
    version = await versions.create_version(
        session, model=registered, candidate=promoted, actor=OPERATOR
    )
    await versions.set_alias(
        session, model=registered, alias="stable", version=version, actor=OPERATOR
    )
    ids["version_id"] = str(version.id)
    return ids


@dataclass(frozen=True)
class MlflowCase:
    least: Role
    # (HTTP method, path under /api/2.0, parameters) for a project's objects.
    request: Callable[[dict[str, str]], tuple[str, str, dict[str, Any]]]
    # Admin requests that set the stage before (e.g. delete what a restore restores).
    before: Callable[[dict[str, str]], list[tuple[str, str, dict[str, Any]]]] = lambda ids: []
    # Admin requests that put things back afterwards, whether the call went through or
    # not (a restore of something not deleted is refused, and that is fine).
    after: Callable[[dict[str, str]], list[tuple[str, str, dict[str, Any]]]] = lambda ids: []
    # The status an allowed call gets (501: allowed, but not offered by this server).
    allowed_status: int = 200


def _unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


_names = itertools.count()
EXP, RUNS = "/mlflow/experiments", "/mlflow/runs"

MLFLOW_CASES: dict[tuple[str, str], MlflowCase] = {
    ("POST", f"{EXP}/create"): MlflowCase(
        DEVELOPER, lambda ids: ("POST", f"{EXP}/create", {"name": _unique("created")})
    ),
    ("GET", f"{EXP}/get"): MlflowCase(
        READ, lambda ids: ("GET", f"{EXP}/get", {"experiment_id": ids["experiment"]})
    ),
    ("GET", f"{EXP}/get-by-name"): MlflowCase(
        READ, lambda ids: ("GET", f"{EXP}/get-by-name", {"experiment_name": "experiment"})
    ),
    ("POST", f"{EXP}/update"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{EXP}/update",
            {"experiment_id": ids["experiment"], "new_name": "experiment"},
        ),
    ),
    ("POST", f"{EXP}/delete"): MlflowCase(
        MANAGE,
        lambda ids: ("POST", f"{EXP}/delete", {"experiment_id": ids["victim"]}),
        after=lambda ids: [("POST", f"{EXP}/restore", {"experiment_id": ids["victim"]})],
    ),
    ("POST", f"{EXP}/restore"): MlflowCase(
        MANAGE,
        lambda ids: ("POST", f"{EXP}/restore", {"experiment_id": ids["victim"]}),
        before=lambda ids: [("POST", f"{EXP}/delete", {"experiment_id": ids["victim"]})],
        after=lambda ids: [("POST", f"{EXP}/restore", {"experiment_id": ids["victim"]})],
    ),
    ("POST", f"{EXP}/set-experiment-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{EXP}/set-experiment-tag",
            {"experiment_id": ids["experiment"], "key": "k", "value": "v"},
        ),
    ),
    ("POST", f"{EXP}/delete-experiment-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{EXP}/delete-experiment-tag",
            {"experiment_id": ids["experiment"], "key": "gone"},
        ),
        before=lambda ids: [
            (
                "POST",
                f"{EXP}/set-experiment-tag",
                {"experiment_id": ids["experiment"], "key": "gone", "value": "v"},
            )
        ],
    ),
    ("POST", f"{EXP}/search"): MlflowCase(READ, lambda ids: ("POST", f"{EXP}/search", {})),
    ("GET", f"{EXP}/search"): MlflowCase(READ, lambda ids: ("GET", f"{EXP}/search", {})),
    ("POST", f"{RUNS}/create"): MlflowCase(
        DEVELOPER, lambda ids: ("POST", f"{RUNS}/create", {"experiment_id": ids["experiment"]})
    ),
    ("GET", f"{RUNS}/get"): MlflowCase(
        READ, lambda ids: ("GET", f"{RUNS}/get", {"run_id": ids["experiment_run"]})
    ),
    ("POST", f"{RUNS}/update"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/update",
            {"run_id": ids["experiment_run"], "status": "FINISHED"},
        ),
    ),
    ("POST", f"{RUNS}/delete"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RUNS}/delete", {"run_id": ids["victim_run"]}),
        after=lambda ids: [("POST", f"{RUNS}/restore", {"run_id": ids["victim_run"]})],
    ),
    ("POST", f"{RUNS}/restore"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RUNS}/restore", {"run_id": ids["victim_run"]}),
        before=lambda ids: [("POST", f"{RUNS}/delete", {"run_id": ids["victim_run"]})],
        after=lambda ids: [("POST", f"{RUNS}/restore", {"run_id": ids["victim_run"]})],
    ),
    ("POST", f"{RUNS}/log-metric"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/log-metric",
            {"run_id": ids["experiment_run"], "key": "m", "value": 1.0, "timestamp": 1},
        ),
    ),
    ("POST", f"{RUNS}/log-parameter"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/log-parameter",
            {"run_id": ids["experiment_run"], "key": "lr", "value": "0.1"},
        ),
    ),
    ("POST", f"{RUNS}/log-batch"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/log-batch",
            {"run_id": ids["experiment_run"], "tags": [{"key": "t", "value": "v"}]},
        ),
    ),
    ("POST", f"{RUNS}/set-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/set-tag",
            {"run_id": ids["experiment_run"], "key": "t", "value": "v"},
        ),
    ),
    ("POST", f"{RUNS}/delete-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RUNS}/delete-tag", {"run_id": ids["experiment_run"], "key": "x"}),
        before=lambda ids: [
            ("POST", f"{RUNS}/set-tag", {"run_id": ids["experiment_run"], "key": "x", "value": "1"})
        ],
    ),
    ("POST", f"{RUNS}/search"): MlflowCase(
        READ,
        lambda ids: ("POST", f"{RUNS}/search", {"experiment_ids": [ids["experiment"]]}),
    ),
    ("POST", f"{RUNS}/log-inputs"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/log-inputs",
            {
                "run_id": ids["experiment_run"],
                "datasets": [{"dataset": {"name": "d", "digest": "1"}}],
            },
        ),
    ),
    ("POST", f"{RUNS}/outputs"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{RUNS}/outputs",
            {"run_id": ids["experiment_run"], "models": [{"model_id": "m-1", "step": 0}]},
        ),
    ),
    ("GET", "/mlflow/metrics/get-history"): MlflowCase(
        READ,
        lambda ids: (
            "GET",
            "/mlflow/metrics/get-history",
            {"run_id": ids["experiment_run"], "metric_key": "loss"},
        ),
    ),
    ("GET", "/mlflow/metrics/get-history-bulk-interval"): MlflowCase(
        READ,
        lambda ids: (
            "GET",
            "/mlflow/metrics/get-history-bulk-interval",
            {"run_ids": [ids["experiment_run"]], "metric_key": "loss"},
        ),
    ),
}


RM, MV = "/mlflow/registered-models", "/mlflow/model-versions"
ONE = {"name": "registered", "version": "1"}
MLFLOW_CASES |= {
    ("POST", f"{RM}/create"): MlflowCase(
        DEVELOPER, lambda ids: ("POST", f"{RM}/create", {"name": _unique("registry")})
    ),
    ("POST", f"{RM}/rename"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RM}/rename", {"name": "registered", "new_name": "renamed"}),
        after=lambda ids: [("POST", f"{RM}/rename", {"name": "renamed", "new_name": "registered"})],
    ),
    ("PATCH", f"{RM}/update"): MlflowCase(
        DEVELOPER,
        lambda ids: ("PATCH", f"{RM}/update", {"name": "registered", "description": "d"}),
    ),
    ("DELETE", f"{RM}/delete"): MlflowCase(
        MANAGE,
        lambda ids: ("DELETE", f"{RM}/delete", {"name": "victim"}),
        # Unregistering leaves the experiment: registering its name again restores it.
        after=lambda ids: [("POST", f"{RM}/create", {"name": "victim"})],
    ),
    ("GET", f"{RM}/get"): MlflowCase(
        READ, lambda ids: ("GET", f"{RM}/get", {"name": "registered"})
    ),
    ("GET", f"{RM}/search"): MlflowCase(READ, lambda ids: ("GET", f"{RM}/search", {})),
    ("POST", f"{RM}/get-latest-versions"): MlflowCase(
        READ, lambda ids: ("POST", f"{RM}/get-latest-versions", {"name": "registered"})
    ),
    ("GET", f"{RM}/get-latest-versions"): MlflowCase(
        READ, lambda ids: ("GET", f"{RM}/get-latest-versions", {"name": "registered"})
    ),
    ("POST", f"{RM}/set-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RM}/set-tag", {"name": "registered", "key": "k", "value": "v"}),
    ),
    ("DELETE", f"{RM}/delete-tag"): MlflowCase(
        DEVELOPER,
        lambda ids: ("DELETE", f"{RM}/delete-tag", {"name": "registered", "key": "k"}),
    ),
    ("POST", f"{RM}/alias"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{RM}/alias", {**ONE, "alias": "champion"}),
    ),
    ("DELETE", f"{RM}/alias"): MlflowCase(
        DEVELOPER,
        lambda ids: ("DELETE", f"{RM}/alias", {"name": "registered", "alias": "champion"}),
    ),
    ("GET", f"{RM}/alias"): MlflowCase(
        READ, lambda ids: ("GET", f"{RM}/alias", {"name": "registered", "alias": "stable"})
    ),
    ("POST", f"{MV}/create"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", f"{MV}/create", {"name": "registered", "source": "s3://b/m"}),
    ),
    ("PATCH", f"{MV}/update"): MlflowCase(
        DEVELOPER, lambda ids: ("PATCH", f"{MV}/update", {**ONE, "description": "d"})
    ),
    ("POST", f"{MV}/transition-stage"): MlflowCase(
        DEVELOPER,
        lambda ids: (
            "POST",
            f"{MV}/transition-stage",
            {**ONE, "stage": "Staging", "archive_existing_versions": False},
        ),
    ),
    ("DELETE", f"{MV}/delete"): MlflowCase(
        DEVELOPER,
        lambda ids: ("DELETE", f"{MV}/delete", {"name": "registered", "version": ids["fresh"]}),
        before=lambda ids: [("POST", f"{MV}/create", {"name": "registered", "source": "s3://b"})],
    ),
    ("GET", f"{MV}/get"): MlflowCase(READ, lambda ids: ("GET", f"{MV}/get", ONE)),
    ("GET", f"{MV}/search"): MlflowCase(
        READ, lambda ids: ("GET", f"{MV}/search", {"filter": "name = 'registered'"})
    ),
    ("GET", f"{MV}/get-download-uri"): MlflowCase(
        READ, lambda ids: ("GET", f"{MV}/get-download-uri", ONE)
    ),
    ("POST", f"{MV}/set-tag"): MlflowCase(
        DEVELOPER, lambda ids: ("POST", f"{MV}/set-tag", {**ONE, "key": "k", "value": "v"})
    ),
    ("DELETE", f"{MV}/delete-tag"): MlflowCase(
        DEVELOPER, lambda ids: ("DELETE", f"{MV}/delete-tag", {**ONE, "key": "k"})
    ),
}


ART, LM = "/mlflow-artifacts", "/mlflow/logged-models"


def _artifact(ids: dict[str, str], name: str = "file.txt") -> str:
    return f"{ART}/artifacts/{ids['experiment']}/{ids['experiment_run']}/artifacts/{name}"


def _put_artifact(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [("PUT", _artifact(ids), {})]


def _logged(ids: dict[str, str], rest: str = "") -> str:
    return f"{LM}/{ids['logged_model']}{rest}"


MLFLOW_CASES |= {
    ("GET", f"{ART}/artifacts"): MlflowCase(
        READ,
        lambda ids: (
            "GET",
            f"{ART}/artifacts",
            {"path": f"{ids['experiment']}/{ids['experiment_run']}/artifacts"},
        ),
    ),
    ("GET", f"{ART}/artifacts/{{path:path}}"): MlflowCase(
        READ, lambda ids: ("GET", _artifact(ids), {}), before=_put_artifact
    ),
    ("PUT", f"{ART}/artifacts/{{path:path}}"): MlflowCase(
        DEVELOPER, lambda ids: ("PUT", _artifact(ids), {})
    ),
    ("DELETE", f"{ART}/artifacts/{{path:path}}"): MlflowCase(
        DEVELOPER, lambda ids: ("DELETE", _artifact(ids), {}), before=_put_artifact
    ),
    ("POST", f"{ART}/mpu/{{action:str}}/{{path:path}}"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", _artifact(ids).replace("/artifacts/", "/mpu/create/", 1), {}),
        allowed_status=501,
    ),
    ("GET", "/mlflow/artifacts/list"): MlflowCase(
        READ, lambda ids: ("GET", "/mlflow/artifacts/list", {"run_id": ids["experiment_run"]})
    ),
    ("POST", LM): MlflowCase(
        DEVELOPER, lambda ids: ("POST", LM, {"experiment_id": ids["experiment"], "name": "x"})
    ),
    ("POST", f"{LM}/search"): MlflowCase(
        READ, lambda ids: ("POST", f"{LM}/search", {"experiment_ids": [ids["experiment"]]})
    ),
    ("GET", f"{LM}/{{model_id}}"): MlflowCase(READ, lambda ids: ("GET", _logged(ids), {})),
    ("PATCH", f"{LM}/{{model_id}}"): MlflowCase(
        DEVELOPER, lambda ids: ("PATCH", _logged(ids), {"status": "LOGGED_MODEL_READY"})
    ),
    ("DELETE", f"{LM}/{{model_id}}"): MlflowCase(
        DEVELOPER,
        lambda ids: ("DELETE", f"{LM}/{ids['fresh_logged_model']}", {}),
        before=lambda ids: [("POST", LM, {"experiment_id": ids["experiment"], "name": "v"})],
    ),
    ("PATCH", f"{LM}/{{model_id}}/tags"): MlflowCase(
        DEVELOPER,
        lambda ids: ("PATCH", _logged(ids, "/tags"), {"tags": [{"key": "k", "value": "v"}]}),
    ),
    ("DELETE", f"{LM}/{{model_id}}/tags/{{tag_key:path}}"): MlflowCase(
        DEVELOPER,
        lambda ids: ("DELETE", _logged(ids, "/tags/gone"), {}),
        before=lambda ids: [
            ("PATCH", _logged(ids, "/tags"), {"tags": [{"key": "gone", "value": "v"}]})
        ],
    ),
    ("POST", f"{LM}/{{model_id}}/params"): MlflowCase(
        DEVELOPER,
        lambda ids: ("POST", _logged(ids, "/params"), {"params": [{"key": "p", "value": "1"}]}),
    ),
    ("GET", f"{LM}/{{model_id}}/artifacts/directories"): MlflowCase(
        READ, lambda ids: ("GET", _logged(ids, "/artifacts/directories"), {})
    ),
}

# MLflow's webhooks: each case works on a fresh (disabled) hook the admin creates first.
HOOKS = "/mlflow/webhooks"
HOOK = {
    "name": "hook",
    # A public address (a private one is refused): a test request fails fast, unanswered.
    "url": "http://8.8.8.8:9/hook",
    "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
    "status": "DISABLED",
}


def _fresh_hook(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [("POST", HOOKS, HOOK)]


def _drop_hook(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [("DELETE", f"{HOOKS}/{ids['fresh_webhook']}", {})]


MLFLOW_CASES |= {
    ("POST", HOOKS): MlflowCase(MANAGE, lambda ids: ("POST", HOOKS, HOOK)),
    ("GET", HOOKS): MlflowCase(MANAGE, lambda ids: ("GET", HOOKS, {})),
    ("GET", f"{HOOKS}/{{webhook_id}}"): MlflowCase(
        MANAGE,
        lambda ids: ("GET", f"{HOOKS}/{ids['fresh_webhook']}", {}),
        before=_fresh_hook,
        after=_drop_hook,
    ),
    ("PATCH", f"{HOOKS}/{{webhook_id}}"): MlflowCase(
        MANAGE,
        lambda ids: ("PATCH", f"{HOOKS}/{ids['fresh_webhook']}", {"description": "d"}),
        before=_fresh_hook,
        after=_drop_hook,
    ),
    ("DELETE", f"{HOOKS}/{{webhook_id}}"): MlflowCase(
        MANAGE,
        lambda ids: ("DELETE", f"{HOOKS}/{ids['fresh_webhook']}", {}),
        before=_fresh_hook,
        after=_drop_hook,
    ),
    ("POST", f"{HOOKS}/{{webhook_id}}/test"): MlflowCase(
        MANAGE,
        lambda ids: ("POST", f"{HOOKS}/{ids['fresh_webhook']}/test", {}),
        before=_fresh_hook,
        after=_drop_hook,
    ),
}


def expected_mlflow(caller: Caller, kind: str, least: Role) -> str:
    """MLflow's answers: like the GraphQL changes, and an unreadable project reads as
    401 for anonymous callers and 404 for everyone else."""
    if least is READ:
        if may_read(caller, kind):
            return OK
        return UNAUTHENTICATED if caller.token is None else NOT_FOUND
    return expected_project_change(caller, kind, least)


MLFLOW_OUTCOMES = {200: OK, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}


async def mlflow_request(
    world: World, token: str | None, project_path: str, request: tuple[str, str, dict[str, Any]]
) -> httpx.Response:
    method, path, params = request
    url = f"/projects/{project_path}/mlflow/api/2.0{path}"
    if method == "GET":
        return await world.client.get(url, params=params, headers=bearer(token))
    if method == "PUT":
        return await world.client.put(url, content=b"bytes", headers=bearer(token))
    return await world.client.request(method, url, json=params, headers=bearer(token))


async def mlflow_outcome(world: World, caller: Caller, kind: str, case: MlflowCase) -> str:
    path = PATHS[kind]
    ids = world.mlflow[path]
    for request in case.before(ids):
        prepared = await mlflow_request(world, world.admin_token, path, request)
        assert prepared.status_code == 200, prepared.text
        # A version or logged model created beforehand is the one the call is about.
        body = prepared.json() if prepared.content else {}
        if "model_version" in body:
            ids = {**ids, "fresh": body["model_version"]["version"]}
        if "model" in body:
            ids = {**ids, "fresh_logged_model": body["model"]["info"]["model_id"]}
        if "webhook" in body:
            ids = {**ids, "fresh_webhook": body["webhook"]["webhook_id"]}
    response = await mlflow_request(world, caller.token, path, case.request(ids))
    for request in case.after(ids):
        await mlflow_request(world, world.admin_token, path, request)
    if response.status_code == case.allowed_status:
        return OK
    return MLFLOW_OUTCOMES.get(response.status_code, f"{response.status_code} {response.text}")


# --- The package API: every route, the least role it needs, and a request. ---

PACKAGES = "/api/v1/projects/{project}/packages"


@dataclass(frozen=True)
class PackageCase:
    least: Role
    # The URL of the request for a project's path and its objects' ids.
    url: Callable[[str, dict[str, str]], str]
    # Whether the admin uploads the file first (a download needs something to find).
    upload_first: bool = False


def _version_files(path: str, ids: dict[str, str]) -> str:
    return f"/api/v1/projects/{path}/packages/ml_models/{ids['version_id']}/files"


def _candidate_file(path: str, ids: dict[str, str]) -> str:
    ref = f"candidate:{ids['experiment_run_iid']}"
    return f"/api/v1/projects/{path}/packages/ml_models/{ref}/files/file.txt"


def _generic_file(path: str, ids: dict[str, str]) -> str:
    return f"/api/v1/projects/{path}/packages/generic/tool/1.0.0/file.txt"


PACKAGE_CASES: dict[tuple[str, str], PackageCase] = {
    ("GET", f"{PACKAGES}/ml_models/{{ref}}/files"): PackageCase(READ, _version_files),
    ("GET", f"{PACKAGES}/ml_models/{{ref}}/files/{{path:path}}"): PackageCase(
        READ, _candidate_file, upload_first=True
    ),
    ("PUT", f"{PACKAGES}/ml_models/{{ref}}/files/{{path:path}}"): PackageCase(
        DEVELOPER, lambda path, ids: f"{_version_files(path, ids)}/file.txt"
    ),
    ("GET", f"{PACKAGES}/generic/{{name}}/{{version}}/{{path:path}}"): PackageCase(
        READ, _generic_file, upload_first=True
    ),
    ("PUT", f"{PACKAGES}/generic/{{name}}/{{version}}/{{path:path}}"): PackageCase(
        DEVELOPER, _generic_file
    ),
}

PACKAGE_OUTCOMES = {200: OK, 201: OK, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}


async def package_outcome(world: World, caller: Caller, kind: str, case: PackageCase) -> str:
    path = PATHS[kind]
    url = case.url(path, world.mlflow[path])
    if case.upload_first:
        prepared = await world.client.put(url, content=b"bytes", headers=bearer(world.admin_token))
        assert prepared.status_code == 201, prepared.text
    method = "PUT" if case.least is not READ else "GET"
    response = await world.client.request(
        method, url, content=b"bytes" if method == "PUT" else None, headers=bearer(caller.token)
    )
    return PACKAGE_OUTCOMES.get(response.status_code, f"{response.status_code} {response.text}")


def _workspace_requests(prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    """MLflow's workspaces API under `prefix`, with what everyone may ask: listing, reading
    the public project, and requests refused as bad input before any role counts (the
    roles' outcomes: tests/mlflow/test_mlflow_workspaces.py)."""
    one = f"{prefix}/mlflow/workspaces/{{workspace_name}}"
    return {
        ("GET", f"{prefix}/mlflow/workspaces"): {},
        ("POST", f"{prefix}/mlflow/workspaces"): {"status": 400, "json": {}},
        ("GET", one): {"url": f"{prefix}/mlflow/workspaces/open"},
        ("PATCH", one): {"status": 400, "json": {}, "url": f"{prefix}/mlflow/workspaces/open"},
        ("DELETE", one): {"status": 400, "url": f"{prefix}/mlflow/workspaces/default"},
    }


# Every other route, with a request that everyone may make and its status (GraphQL's
# data is guarded by the fields above; GET /graphql serves GraphiQL to a browser).
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {},
    ("GET", "/readyz"): {},
    # Open unless MODELREG_METRICS_TOKEN is set (tests/http/test_metrics.py covers the token).
    ("GET", "/metrics"): {},
    ("GET", "/graphql"): {"headers": {"Accept": "text/html"}},
    ("POST", "/graphql"): {"json": {"query": "{ version }"}},
    ("GET", "/health"): {},
    ("GET", "/version"): {},
    ("GET", "/api/3.0/mlflow/server-info"): {},
    # Signing in needs credentials in the body, whoever calls; signing out with a token
    # and no session cookie has nothing to end.
    ("GET", "/sign-in"): {},
    ("POST", "/sign-in"): {"status": 400, "json": {}},
    ("POST", "/sign-out"): {"status": 204},
    ("GET", "/ajax-api/3.0/mlflow/server-info"): {},
    # MLflow's workspaces API: what everyone may ask (`_workspace_requests`).
    **_workspace_requests("/api/3.0"),
    **_workspace_requests("/ajax-api/3.0"),
    # The web UI's page is the same for everyone (what it shows comes through GraphQL):
    # at any UI address, and at a project's MLflow tracking URI, where MLflow's links land.
    ("GET", "/{address:path}"): {"url": "/default/-/models/default"},
    ("GET", ""): {"url": "/projects/default/mlflow"},
    ("GET", "/"): {"url": "/projects/default/mlflow/"},
    # MLflow's unknown endpoints answer ENDPOINT_NOT_FOUND to everyone.
    **{
        (method, f"{prefix}/{{rest:path}}"): {"status": 404, "url": f"{prefix}/nothing/here"}
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        for prefix in ("/api/2.0", "/api/3.0", "/ajax-api/2.0", "/ajax-api/3.0")
    },
}


def _served(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    served = set()
    for route in routes:
        if isinstance(route, Mount):
            served |= _served(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            served |= {(m, prefix + route.path) for m in (route.methods or set()) - {"HEAD"}}
    return served


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/unused.db"))
    unknown = set()
    for method, path in _served(app.routes):
        relative = path.removeprefix("/projects/{project}/mlflow")
        mlflow_path = relative.removeprefix("/api/2.0").removeprefix("/ajax-api/2.0")
        if (
            (method, relative) in ROUTES
            or (method, path) in PACKAGE_CASES
            or (mlflow_path != relative and (method, mlflow_path) in MLFLOW_CASES)
        ):
            continue
        unknown.add((method, path))
    assert unknown == set()


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


# The policy is decided in Python, whatever the database: the matrix runs on SQLite; the
# surfaces' own tests run on both databases.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_each_role_and_token_gets_what_the_table_says(world: World) -> None:
    mismatches: list[tuple[object, ...]] = []
    for caller in world.callers:
        for field, (operation, expect) in PROJECT_FIELDS.items():
            for kind in PROJECT_KINDS:
                seen = await operation(world, caller, PATHS[kind])
                wanted = expect(caller, kind)
                if seen != wanted:
                    mismatches.append((field, caller.role, caller.token_kind, kind, seen, wanted))
        for (method, path), case in MLFLOW_CASES.items():
            for kind in PROJECT_KINDS:
                seen = await mlflow_outcome(world, caller, kind, case)
                wanted = expected_mlflow(caller, kind, case.least)
                if seen != wanted:
                    mismatches.append(
                        (f"{method} {path}", caller.role, caller.token_kind, kind, seen, wanted)
                    )
        for (method, path), package_case in PACKAGE_CASES.items():
            for kind in PROJECT_KINDS:
                seen = await package_outcome(world, caller, kind, package_case)
                wanted = expected_mlflow(caller, kind, package_case.least)
                if seen != wanted:
                    mismatches.append(
                        (f"{method} {path}", caller.role, caller.token_kind, kind, seen, wanted)
                    )
        for field, (account_operation, account_expect) in ACCOUNT_FIELDS.items():
            seen = await account_operation(world, caller)
            wanted = account_expect(caller)
            if seen != wanted:
                mismatches.append((field, caller.role, caller.token_kind, "-", seen, wanted))
        for (method, path), request in ROUTES.items():
            headers = {**request.get("headers", {}), **bearer(caller.token)}
            response = await world.client.request(
                method, request.get("url", path), headers=headers, json=request.get("json")
            )
            if response.status_code != request.get("status", 200):
                mismatches.append(
                    (path, caller.role, caller.token_kind, "-", response.status_code, 200)
                )
    assert mismatches == []
