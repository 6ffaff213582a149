"""Requests and links that cannot be forged: JSON endpoints take only declared JSON bodies
(what a cross-site form or a simple fetch cannot send), GraphQL over GET never mutates, and
download links come from MODELREG_EXTERNAL_URL, never from the Host the client sent."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.request_support import AdminApp, admin_app

CROSS_SITE = {"Origin": "https://evil.example", "Referer": "https://evil.example/page"}
CREATE_MODEL = """mutation($name: String!) {
  modelCreate(input: {project: "default", displayName: $name}) { __typename }
}"""
DOWNLOAD_URLS = """query($name: String!) { project(path: "default") { model(name: $name) {
  candidates(first: 5) { edges { node { artifacts { path downloadUrl } } } } } } }"""


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[AdminApp]:
    async with admin_app(database_url, tmp_path) as running:
        yield running


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"root:{token}".encode()).decode()}


async def run_count(app: AdminApp) -> int:
    found = await app.mlflow("runs/search", {"experiment_ids": ["0"]})
    assert found.status_code == 200, found.text
    return len(found.json().get("runs", []))


async def model_names(app: AdminApp) -> list[str]:
    response = await app.client.post(
        "/graphql",
        json={"query": '{ project(path: "default") { models { edges { node { name } } } } }'},
        headers=app.headers,
    )
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["project"]["models"]["edges"]
    return [edge["node"]["name"] for edge in edges]


async def test_a_cross_site_form_post_creates_nothing(app: AdminApp) -> None:
    body = json.dumps({"experiment_id": "0"})
    refusals = [
        {"Content-Type": "text/plain"},
        {"Content-Type": "text/plain;charset=UTF-8"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/jsonp"},
        {},
    ]
    for content_type in refusals:
        response = await app.client.post(
            "/api/2.0/mlflow/runs/create",
            content=body,
            headers=basic(app.token) | CROSS_SITE | content_type,
        )
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "application/json" in response.json()["message"]
    # A bodiless POST is what a cross-site fetch sends without asking, too.
    bodiless = await app.client.post(
        "/projects/default/mlflow/api/2.0/mlflow/runs/create", headers=basic(app.token)
    )
    assert bodiless.status_code == 415
    assert await run_count(app) == 0

    document = json.dumps({"query": CREATE_MODEL, "variables": {"name": "Forged"}})
    for content_type in refusals:
        response = await app.client.post(
            "/graphql", content=document, headers=basic(app.token) | CROSS_SITE | content_type
        )
        assert response.status_code == 415, (content_type, response.text)
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "forged" not in await model_names(app)


async def test_json_as_clients_send_it_is_taken(app: AdminApp) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        created = await app.client.post(
            "/api/2.0/mlflow/runs/create",
            content=json.dumps({"experiment_id": "0"}),
            headers=app.headers | {"Content-Type": content_type},
        )
        assert created.status_code == 200, (content_type, created.text)
    assert await run_count(app) == 3
    # A DELETE or PATCH without a body needs no Content-Type (browsers preflight them);
    # with a body it does.
    no_body = await app.client.delete("/api/2.0/mlflow/logged-models/m-0", headers=app.headers)
    assert no_body.status_code == 404, no_body.text
    assert no_body.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    plain_delete = await app.client.request(
        "DELETE",
        "/api/2.0/mlflow/registered-models/delete",
        content=b'{"name": "x"}',
        headers=app.headers | {"Content-Type": "text/plain"},
    )
    assert plain_delete.status_code == 415
    # GET requests keep their query strings.
    by_get = await app.client.get(
        "/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}, headers=app.headers
    )
    assert by_get.status_code == 200, by_get.text


async def test_graphql_over_get_runs_queries_never_mutations(app: AdminApp) -> None:
    query = await app.client.get(
        "/graphql", params={"query": "{ version }"}, headers=app.headers | CROSS_SITE
    )
    assert query.status_code == 200
    assert query.json()["data"]["version"]
    mutation = await app.client.get(
        "/graphql",
        params={"query": CREATE_MODEL, "variables": json.dumps({"name": "Via Get"})},
        headers=basic(app.token) | CROSS_SITE,
    )
    assert mutation.status_code == 400
    assert mutation.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "via_get" not in await model_names(app)
    graphiql = await app.client.get("/graphql", headers={"Accept": "text/html"})
    assert graphiql.status_code == 200
    assert "graphiql" in graphiql.text.lower()


async def artifact_links(app: AdminApp, headers: dict[str, str]) -> list[str]:
    """The download URLs GraphQL gives for the one artifact of a run of model `links`."""
    found = await app.client.post(
        "/graphql",
        json={"query": DOWNLOAD_URLS, "variables": {"name": "links"}},
        headers=app.headers | headers,
    )
    assert found.status_code == 200, found.text
    edges = found.json()["data"]["project"]["model"]["candidates"]["edges"]
    return [file["downloadUrl"] for edge in edges for file in edge["node"]["artifacts"]]


async def log_an_artifact(app: AdminApp) -> None:
    experiment = await app.mlflow("experiments/create", {"name": "Links"})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    run = await app.mlflow("runs/create", {"experiment_id": experiment_id})
    run_id = run.json()["run"]["info"]["run_id"]
    uploaded = await app.client.put(
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model.pkl",
        content=b"weights",
        headers=app.headers,
    )
    assert uploaded.status_code == 200, uploaded.text


FORGED: dict[str, Any] = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_download_urls_never_reflect_a_forged_host(database_url: str, tmp_path: Path) -> None:
    async with admin_app(database_url, tmp_path) as app:
        await log_an_artifact(app)
        [link] = await artifact_links(app, FORGED)
        # Unconfigured: a path from the server's root, resolved against what the client used.
        assert link.startswith("/api/v1/projects/default/packages/ml_models/candidate:")
        assert link.endswith("/files/model.pkl")
        downloaded = await app.client.get(link, headers=app.headers)
        assert downloaded.content == b"weights"

    configured = tmp_path / "configured"
    configured.mkdir()
    external = "https://models.example.com/registry"
    async with admin_app(database_url, configured, external_url=external) as app:
        [link] = await artifact_links(app, FORGED)
        assert link.startswith(f"{external}/api/v1/projects/default/packages/ml_models/")
        assert "evil" not in link


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_forwarded_headers_count_only_when_trusted(database_url: str, tmp_path: Path) -> None:
    async with admin_app(database_url, tmp_path, trusted_proxy_headers=True) as app:
        await log_an_artifact(app)
        proxied = {"X-Forwarded-Host": "models.internal:8443", "X-Forwarded-Proto": "https"}
        [link] = await artifact_links(app, proxied)
        assert link.startswith("https://models.internal:8443/api/v1/projects/default/")
        # Several proxies: the first, client-facing value.
        [link] = await artifact_links(
            app, {"X-Forwarded-Host": "front.example, inner", "X-Forwarded-Proto": "https, http"}
        )
        assert link.startswith("https://front.example/api/v1/")
        # A host that is no plain name[:port] is ignored, not reflected.
        [link] = await artifact_links(app, {"X-Forwarded-Host": "evil.example/@x"})
        assert link.startswith("/api/v1/")
