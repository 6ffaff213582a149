"""What a GraphQL request costs and what it may ask: a page of candidates with their
params, metrics, versions and authors reads the database a fixed number of times,
whatever its size; documents that ask too much are refused before they run; unexpected
failures reach the client without their details; GraphiQL answers a browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.services import candidates, models, projects, users, versions
from app.services.actor import OPERATOR, Actor
from app.services.candidates import MetricPoint
from tests.clients import jobs_settled
from tests.graphql_support import ADMIN_USERNAME, GraphQLApi, edges_of, graphql_api
from tests.statements import queries, recorded

PAGE = """
query Page($path: String!, $first: Int!) {
  project(path: $path) {
    model(name: "ranked") {
      candidates(first: $first, orderBy: {field: METRIC, key: "acc", direction: DESC}) {
        totalCount
        edges { node {
          name
          params { name value }
          metrics { name value step }
          version { version aliases }
          author { username }
        } }
      }
    }
  }
}
"""


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def seed(api: GraphQLApi, count: int) -> None:
    """`count` candidates of the model `ranked`, authored by the administrator, each with
    params and metrics; every third one promoted into a version with an alias."""
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        admin = await users.get_user(session, username=ADMIN_USERNAME)
        actor = Actor(user_id=admin.id, username=admin.username, is_admin=True)
        model = await models.create_model(
            session, project=project, display_name="Ranked", name="ranked", actor=OPERATOR
        )
        for index in range(count):
            candidate = await candidates.create_candidate(session, model=model, actor=actor)
            await candidates.log_batch(
                session,
                candidate=candidate,
                params={"lr": f"0.{index}", "depth": str(index % 7)},
                metrics=[
                    MetricPoint("acc", index / count, timestamp=1, step=1),
                    MetricPoint("loss", 1 - index / count, timestamp=1, step=1),
                ],
                actor=OPERATOR,
            )
            if index % 3 == 0:
                version = await versions.create_version(
                    session, model=model, candidate=candidate, actor=actor
                )
                await versions.set_alias(
                    session, model=model, version=version, alias=f"a{index}", actor=actor
                )


async def test_a_page_of_fifty_costs_the_statements_of_a_page_of_five(api: GraphQLApi) -> None:
    await seed(api, 60)
    variables = {"path": api.project_path}
    await api.data(PAGE, {**variables, "first": 1})  # the token check is cached after this
    await jobs_settled(api.database)
    seen: dict[int, list[str]] = {}
    for size in (5, 50):
        with recorded() as statements:
            page = (await api.data(PAGE, {**variables, "first": size}))["project"]["model"]
        nodes = edges_of(page["candidates"])
        assert len(nodes) == size
        assert page["candidates"]["totalCount"] == 60
        # The page is really filled in: ordered by acc, with every related object.
        assert [node["name"] for node in nodes[:2]] == ["candidate-60", "candidate-59"]
        assert all(node["author"] == {"username": ADMIN_USERNAME} for node in nodes)
        assert all(len(node["params"]) == 2 and len(node["metrics"]) == 2 for node in nodes)
        assert any(node["version"] and node["version"]["aliases"] for node in nodes)
        seen[size] = queries(statements)
    assert len(seen[5]) == len(seen[50]), seen
    # The project and the caller's role in it, the model, the page, its total; then
    # params, metrics, versions, aliases and authors of the page, one statement each.
    assert 8 <= len(seen[50]) <= 10, seen[50]


COMPLEX_CASES = {
    "nested-thousands": (
        """query($path: String!) { project(path: $path) { models(first: 1000) { edges { node {
             candidates(first: 1000) { edges { node { name } } } } } } } }""",
        "nodes",
    ),
    "nested-thousands-in-variables": (
        """query($path: String!, $n: Int!) { project(path: $path) { models(first: $n) {
             edges { node { candidates(first: $n) { edges { node { name } } } } } } } }""",
        "nodes",
    ),
    "too-deep": (
        'query($path: String!) { project(path: $path) { model(name: "x") {'
        + " latestVersion { model { latestVersion { model {" * 4
        + " name"
        + " } } } }" * 4
        + " } } }",
        "deep",
    ),
    "too-many-aliases": (
        "query($path: String!) { "
        + " ".join(f"a{index}: project(path: $path) {{ path }}" for index in range(31))
        + " }",
        "aliases",
    ),
    "too-many-tokens": (
        "query($path: String!) { project(path: $path) { " + "path " * 2100 + "} }",
        "tokens",
    ),
}


@pytest.mark.parametrize("case", list(COMPLEX_CASES))
async def test_a_document_asking_too_much_is_refused_before_it_runs(
    api: GraphQLApi, case: str
) -> None:
    document, words = COMPLEX_CASES[case]
    await api.data("{ version }")
    with recorded() as statements:
        body = await api.post(document, {"path": api.project_path, "n": 1000})
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert words in error["message"]
    assert queries(statements) == []


async def test_nested_pages_of_a_hundred_are_allowed(api: GraphQLApi) -> None:
    await seed(api, 3)
    found = await api.data(
        """query($path: String!) { project(path: $path) {
             models(first: 100, search: "ranked") { edges { node {
             name candidates(first: 100) { edges { node { name } } } } } } } }""",
        {"path": api.project_path},
    )
    [model] = edges_of(found["project"]["models"])
    assert model["name"] == "ranked"
    assert len(model["candidates"]["edges"]) == 3


async def test_an_unexpected_failure_is_masked(
    api: GraphQLApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(api, 2)

    async def broken(*arguments: Any, **options: Any) -> Any:
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(candidates, "params_of", broken)
    body = await api.post(
        """query($path: String!) { project(path: $path) { path model(name: "ranked") {
             name candidates(first: 1) { edges { node { params { name } } } } } } }""",
        {"path": api.project_path},
    )
    [error] = body["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret detail" not in str(body)
    # What did not fail is still answered; the failure nulls its connection only.
    assert body["data"]["project"] == {
        "path": api.project_path,
        "model": {"name": "ranked", "candidates": None},
    }


async def test_graphiql_answers_a_browser_from_this_server_only(api: GraphQLApi) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"].startswith("default-src 'self'; ")
    [script] = re.findall(r'<script type="module" src="([^"]+)"', response.text)
    assert re.fullmatch(r"/static/assets/graphiql-[\w-]+\.js", script)
    assert "//" not in response.text  # no other host, not even scheme-relative
    asset = await api.client.get(script)
    assert asset.status_code == 200
    assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
