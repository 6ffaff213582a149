"""`userPermissions` never lies: for every caller (each role with an `api` and a
`read_api` token, an administrator, a user in no project, an anonymous caller) on a
private project and on a public one, each flag of a Project, Model, ModelVersion and
Candidate says exactly what the operation it names then does through GraphQL, MLflow
and the package API. And a page of fifty candidates with their flags costs the
statements of a page of five."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Role
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from app.services.policy import LEAST_ROLE, Operation
from tests.access.test_authorization_matrix import (
    EXP,
    MLFLOW_CASES,
    MV,
    OK,
    PACKAGE_CASES,
    PACKAGES,
    PATHS,
    PROJECT_FIELDS,
    RM,
    RUNS,
    Caller,
    World,
    mlflow_outcome,
    package_outcome,
)
from tests.access.test_one_rule_per_operation import built_world
from tests.graphql_support import GraphQLApi, edges_of, graphql_api
from tests.statements import queries, recorded

MLFLOW_WEBHOOKS = "/mlflow/webhooks"
VERSION_FILE = ("PUT", f"{PACKAGES}/ml_models/{{ref}}/files/{{path:path}}")

# Each flag: the GraphQL fields, MLflow routes and package routes that do what it names.
FLAGS: dict[str, dict[str, tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]]] = {
    "project": {
        "updateProject": (["Mutation.projectUpdate"], [], []),
        "manageMembers": (["Mutation.memberSet", "Mutation.memberRemove"], [], []),
        "createModel": (
            ["Mutation.modelCreate"],
            [("POST", f"{EXP}/create"), ("POST", f"{RM}/create")],
            [],
        ),
        "changeVisibility": (["Mutation.projectUpdate(visibility)"], [], []),
        "manageWebhooks": (
            [
                "Project.webhooks",
                "Mutation.webhookCreate",
                "Mutation.webhookUpdate",
                "Mutation.webhookDelete",
                "Mutation.webhookTest",
                "Mutation.webhookDeliveryRedeliver",
            ],
            [("POST", f"{MLFLOW_WEBHOOKS}"), ("GET", f"{MLFLOW_WEBHOOKS}")],
            [],
        ),
    },
    "model": {
        "updateModel": (
            ["Mutation.modelUpdate"],
            [("PATCH", f"{RM}/update"), ("POST", f"{EXP}/update")],
            [],
        ),
        "deleteModel": (
            ["Mutation.modelDelete"],
            [("POST", f"{EXP}/delete"), ("DELETE", f"{RM}/delete")],
            [],
        ),
        "createVersion": (["Mutation.modelVersionCreate"], [("POST", f"{MV}/create")], []),
        "manageAliases": (
            ["Mutation.aliasSet", "Mutation.aliasDelete"],
            [("POST", f"{RM}/alias"), ("DELETE", f"{RM}/alias")],
            [],
        ),
        "logCandidate": (["Mutation.candidateCreate"], [("POST", f"{RUNS}/create")], []),
    },
    "modelVersion": {
        "updateVersion": (["Mutation.modelVersionUpdate"], [("PATCH", f"{MV}/update")], []),
        "deleteVersion": (["Mutation.modelVersionDelete"], [("DELETE", f"{MV}/delete")], []),
        "manageAliases": (["Mutation.aliasSet"], [("POST", f"{RM}/alias")], []),
        "uploadFiles": ([], [], [VERSION_FILE]),
    },
    "candidate": {
        "updateCandidate": (["Mutation.candidateUpdate"], [("POST", f"{RUNS}/update")], []),
        "deleteCandidate": (["Mutation.candidateDelete"], [("POST", f"{RUNS}/delete")], []),
        "logMetrics": (["Mutation.candidateLogMetrics"], [("POST", f"{RUNS}/log-metric")], []),
        "promote": (["Mutation.modelVersionCreate"], [], []),
    },
}

PERMISSIONS = " ".join(
    f"{owner}{'(path: $p)' if owner == 'project' else f'(id: ${owner})'} "
    f"{{ userPermissions {{ {' '.join(flags)} }} }}"
    for owner, flags in FLAGS.items()
)
QUERY = f"query($p: String!, $model: ID!, $modelVersion: ID!, $candidate: ID!) {{ {PERMISSIONS} }}"


async def user_permissions(world: World, caller: Caller, path: str) -> dict[str, Any]:
    ids = world.nodes[path]
    return dict(
        await world.ask(
            QUERY,
            caller,
            p=path,
            model=ids["model"],
            modelVersion=ids["version"],
            candidate=ids["candidate"],
        )
    )


# The rule is decided in Python, whatever the database (as in the authorization matrix).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_each_flag_says_what_its_operation_then_does_through_every_door(
    world: World,
) -> None:
    assert {c.role for c in world.callers} == {"admin", *Role, None}
    lies: list[tuple[str, str, str, object, str | None, bool, str]] = []
    granted: set[tuple[str, str, object, str | None, bool]] = set()
    for kind in ("own", "public"):
        path = PATHS[kind]
        for caller in world.callers:
            answer = await user_permissions(world, caller, path)
            for owner, flags in FLAGS.items():
                for flag, (fields, routes, package_routes) in flags.items():
                    # A hidden object (null) shows no buttons at all.
                    shown = bool(answer[owner] and answer[owner]["userPermissions"][flag])
                    granted.add((owner, flag, caller.role, caller.token_kind, shown))
                    for field in fields:
                        operation, _ = PROJECT_FIELDS[field]
                        seen = await operation(world, caller, path)
                        if (seen == OK) != shown:
                            lies.append(
                                (kind, owner, flag, caller.role, caller.token_kind, shown, seen)
                            )
                    for route in routes:
                        seen = await mlflow_outcome(world, caller, kind, MLFLOW_CASES[route])
                        if (seen == OK) != shown:
                            lies.append(
                                (kind, owner, flag, caller.role, caller.token_kind, shown, seen)
                            )
                    for route in package_routes:
                        seen = await package_outcome(world, caller, kind, PACKAGE_CASES[route])
                        if (seen == OK) != shown:
                            lies.append(
                                (kind, owner, flag, caller.role, caller.token_kind, shown, seen)
                            )
    assert lies == []
    # The flags are not all one answer: a developer may delete versions, not models.
    assert ("modelVersion", "deleteVersion", Role.DEVELOPER, "api", True) in granted
    assert ("model", "deleteModel", Role.DEVELOPER, "api", False) in granted
    assert ("project", "changeVisibility", Role.OWNER, "api", True) in granted
    assert ("project", "manageWebhooks", Role.MAINTAINER, "api", True) in granted
    assert ("project", "manageWebhooks", Role.DEVELOPER, "api", False) in granted


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_flags_follow_the_table_for_each_role(
    world: World,
) -> None:
    operations = {
        "updateModel": Operation.UPDATE_MODEL,
        "deleteModel": Operation.DELETE_MODEL,
        "createVersion": Operation.CREATE_VERSION,
        "manageAliases": Operation.MANAGE_ALIASES,
        "logCandidate": Operation.LOG_RUN,
    }
    hidden = {"project": None, "model": None, "modelVersion": None, "candidate": None}
    readers = [role for role in Role if role >= LEAST_ROLE[Operation.READ]]
    seen: dict[tuple[object, str | None], dict[str, bool]] = {}
    for caller in world.callers:
        answer = await user_permissions(world, caller, PATHS["own"])
        if caller.role == "admin" or caller.role in readers:
            seen[(caller.role, caller.token_kind)] = answer["model"]["userPermissions"]
        else:
            # Anonymous, a user in no project, a guest: the project and its objects are hidden.
            assert answer == hidden, caller
    for role in readers:
        assert seen[(role, "api")] == {
            flag: role >= LEAST_ROLE[operation] for flag, operation in operations.items()
        }, role
        assert set(seen[(role, "read_api")].values()) == {False}
    assert set(seen[("admin", "api")].values()) == {True}
    assert set(seen[("admin", "read_api")].values()) == {False}


# --- What the flags cost ---------------------------------------------------------------

PAGE = """query($path: String!, $first: Int!) { project(path: $path) {
    userPermissions { updateProject }
    model(name: "many") {
      userPermissions { deleteModel }
      candidates(first: $first) { edges { node { name
        userPermissions { updateCandidate deleteCandidate logMetrics promote }
      } } }
    } } }"""


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with built_world(database_url, tmp_path) as built:
        yield built


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def test_a_page_of_fifty_candidates_with_their_flags_costs_the_statements_of_five(
    api: GraphQLApi,
) -> None:
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session, project=project, display_name="many", actor=OPERATOR
        )
        for index in range(50):
            await candidates.create_candidate(
                session, model=model, name=f"run{index}", actor=OPERATOR
            )
    developer = await api.add_user("dev", role=Role.DEVELOPER)
    variables = {"path": api.project_path}
    await api.data(PAGE, {**variables, "first": 1}, token=developer)  # caches the token check
    seen: dict[int, list[str]] = {}
    for size in (5, 50):
        with recorded() as statements:
            page = (await api.data(PAGE, {**variables, "first": size}, token=developer))["project"]
        nodes = edges_of(page["model"]["candidates"])
        assert len(nodes) == size
        assert page["userPermissions"] == {"updateProject": False}
        assert page["model"]["userPermissions"] == {"deleteModel": False}
        assert all(
            node["userPermissions"]
            == {
                "updateCandidate": True,
                "deleteCandidate": True,
                "logMetrics": True,
                "promote": True,
            }
            for node in nodes
        )
        seen[size] = queries(statements)
    assert len(seen[5]) == len(seen[50]), seen
    # The project with the caller's role in it (one statement), the model, the page; then
    # the flags' project and the caller's role in it, one statement each for the page.
    assert len(seen[50]) == 5, seen[50]
