"""The browser pages modelreg serves from its own frontend build: the web UI at ``/`` and
GraphiQL at ``GET /graphql`` (`app.graphql.ide`). Their scripts, styles and fonts all
come from this server, so they work with no network beyond it.

Each page is one entry of the frontend build (``frontend/``, built into ``app/static/``,
committed and shipped in the package). The build's ``manifest.json`` names each entry's
hashed script and styles; `FrontendFiles` serves them under ``/static/``: hashed files
cached for a year, anything else revalidated. Pages themselves are never cached.

A page's Content-Security-Policy allows this origin only: scripts, styles, and requests
(``connect-src 'self'``, which also admits websockets to this host, the subscriptions'
transport). Images and fonts may also be ``data:`` URLs (content of the page itself,
never a request). A page may admit ``<style>`` elements that carry its response's fresh
nonce (a ``csp-nonce`` meta tag hands it to the page's script); no other inline style.

The web UI is one page application: the server answers every UI address with the same
page and the script reads the address (``frontend/src/ui/router.tsx``). UI addresses are
``GET``\\s of

- ``/``, ``/-/...`` (pages of no project: ``/-/sign-in``, ``/-/tokens``);
- ``/<project>`` and ``/<project>/-/...`` (`app.web_paths` lays them out);
- ``/projects/<project>/mlflow`` with or without its trailing ``/``: a project's MLflow
  tracking URI, where the links an MLflow client prints (``<uri>/#/experiments/1``) land.

A first segment that belongs to an API (`app.web_paths.SURFACE_SEGMENTS`) is never a UI
address, so the UI route, mounted last, leaves an unknown API path to its surface's 404.
The MLflow landing addresses lie inside the MLflow surface's mount: their routes go
before it (`mlflow_landing_routes`), and match ``GET`` of those two paths alone.
"""

from __future__ import annotations

import functools
import html
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.web_paths import SURFACE_SEGMENTS

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
MANIFEST_NAME = "manifest.json"
# Names the build gives with a content hash: their bytes never change under a name.
HASHED_DIRECTORY = "assets/"

_PROJECT_PAGE = re.compile(r"/(?P<first>[^/]+)/?(?:/-/.*)?")


def content_security_policy(style_nonce: str | None = None) -> str:
    styles = f"'self' 'nonce-{style_nonce}'" if style_nonce else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            "connect-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ]
    )


@dataclass(frozen=True)
class PageAssets:
    """What one entry of the frontend build loads: its script and stylesheets."""

    script: str
    styles: tuple[str, ...]


@functools.cache
def page_assets(entry: str) -> PageAssets:
    """The built files of `entry`, as the build's manifest names them."""
    manifest = json.loads((STATIC_DIRECTORY / MANIFEST_NAME).read_text())
    built = manifest["entries"][entry]
    return PageAssets(script=built["script"], styles=tuple(built["styles"]))


def frontend_page(*, entry: str, title: str, root_id: str, with_style_nonce: bool) -> Response:
    """The HTML page that loads `entry` into an element `root_id`, never cached."""
    assets = page_assets(entry)
    nonce = secrets.token_urlsafe(18) if with_style_nonce else None
    nonce_meta = f'\n    <meta name="csp-nonce" content="{nonce}">' if nonce else ""
    styles = "".join(
        f'\n    <link rel="stylesheet" href="{_asset_url(path)}">' for path in assets.styles
    )
    page = f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">{nonce_meta}
    <title>{html.escape(title)}</title>{styles}
    <script type="module" src="{_asset_url(assets.script)}"></script>
  </head>
  <body>
    <div id="{html.escape(root_id)}">Loading…</div>
  </body>
</html>
"""
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "Cache-Control": "no-cache",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _asset_url(path: str) -> str:
    return html.escape(f"{STATIC_PATH}/{path}")


class FrontendFiles(StaticFiles):
    """The built frontend under /static/: hashed files are immutable, so browsers keep
    them a year; anything else (the manifest) is revalidated on each use."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIRECTORY)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            hashed = path.replace("\\", "/").startswith(HASHED_DIRECTORY)
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if hashed else "no-cache"
            )
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def is_ui_path(path: str) -> bool:
    """Whether `path` is an address of the web UI (the module docstring lists them)."""
    if path == "/" or path.startswith("/-/"):
        return True
    page = _PROJECT_PAGE.fullmatch(path)
    return page is not None and page["first"] not in SURFACE_SEGMENTS and page["first"] != "-"


async def ui_page(request: Request) -> Response:
    return frontend_page(entry="ui", title="modelreg", root_id="app", with_style_nonce=False)


class _UIRoute(Route):
    """Matches the UI's addresses only, so other paths keep their surfaces' answers."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not is_ui_path(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def ui_routes() -> list[BaseRoute]:
    """The web UI's route; mount it after every other surface's."""
    return [_UIRoute("/{address:path}", ui_page, methods=["GET"])]


def mlflow_landing_routes() -> list[BaseRoute]:
    """A project's tracking URI opened in a browser; mount them before the MLflow surface."""
    return [
        Route(path, ui_page, methods=["GET"])
        for path in ("/projects/{project}/mlflow", "/projects/{project}/mlflow/")
    ]
