"""Which paths serve the web UI's page (`app.frontend`): every UI address answers the same
page of the build's `ui` entry, under a same-origin policy and never cached; every other
path keeps its surface's answer, an unknown API path its surface's 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.frontend import page_assets
from tests.clients import app_settings, serving
from tests.live_server import copy_sqlite

UI_POLICY = (
    "default-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@pytest.fixture
async def client(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = app_settings(tmp_path, copy_sqlite(sqlite_template, tmp_path))
    async with serving(settings) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/-/sign-in?next=%2Fdemo",
        "/-/tokens",
        "/-/anything",
        "/demo",
        "/demo/",
        "/demo/-/members",
        "/demo/-/models/iris/candidates/3",
        "/demo/-/models/iris/versions/1.0.0",
        "/projects/demo/mlflow",
        "/projects/demo/mlflow/",
    ],
)
async def test_every_ui_address_answers_the_ui_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assets = page_assets("ui")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == UI_POLICY
    assert response.headers["cache-control"] == "no-cache"
    assert f'<script type="module" src="/static/{assets.script}"></script>' in response.text
    for style in assets.styles:
        assert f'<link rel="stylesheet" href="/static/{style}">' in response.text
    assert '<div id="app">' in response.text


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [
        # MLflow's unknown endpoints, at the root and under a project's tracking URI.
        ("/api/2.0/mlflow/nothing", 404, "application/json"),
        ("/projects/demo/mlflow/api/2.0/mlflow/nothing", 404, "application/json"),
        ("/projects/demo", 404, "application/json"),
        # The package API's.
        ("/api/v1/nothing", 404, "application/json"),
        # Paths of the server's own that are no UI address.
        ("/static/nothing.js", 404, "text/plain; charset=utf-8"),
        ("/api", 404, "text/plain; charset=utf-8"),
        ("/ajax-api", 404, "text/plain; charset=utf-8"),
        ("/demo/models", 404, "text/plain; charset=utf-8"),
    ],
)
async def test_other_paths_keep_their_surfaces_answers(
    client: httpx.AsyncClient, path: str, status: int, content_type: str
) -> None:
    response = await client.get(path)
    assert (response.status_code, response.headers["content-type"]) == (status, content_type)


async def test_only_get_serves_the_ui(client: httpx.AsyncClient) -> None:
    assert (await client.post("/demo")).status_code == 405
    # Sign-in keeps its own form at GET /sign-in; the UI's page is /-/sign-in.
    form = await client.get("/sign-in")
    assert form.status_code == 200
    assert '<div id="app">' not in form.text
    assert (await client.get("/healthz")).json() == {"status": "ok"}
