"""GraphiQL, served by modelreg itself: a browser asking ``GET /graphql`` for HTML gets a
page whose scripts, styles and fonts all come from this server, so it works with no
network beyond it.

The page is the ``graphiql`` entry of the frontend build (``frontend/``, built into
``app/static/``, committed and shipped in the package). The build's ``manifest.json``
names each entry's hashed script and styles; the static route serves them under
``/static/`` — hashed files cached for a year, anything else revalidated.

The page's Content-Security-Policy allows this origin only. Images and fonts may also
be ``data:`` URLs: GraphiQL's stylesheet embeds its fonts and icons that way, and a
``data:`` URL is content of the page itself, never a request. GraphiQL's dialogs add
``<style>`` elements: each response carries a fresh nonce (a ``csp-nonce`` meta tag the
page's script hands to them) that the policy admits, and no other inline style.
"""

from __future__ import annotations

import functools
import html
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIRECTORY = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH = "/static"
MANIFEST_NAME = "manifest.json"
# Names the build gives with a content hash: their bytes never change under a name.
HASHED_DIRECTORY = "assets/"


def content_security_policy(style_nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"style-src 'self' 'nonce-{style_nonce}'",
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


def graphiql_page() -> Response:
    """The GraphiQL page, under a policy that lets it load from this server only."""
    assets = page_assets("graphiql")
    nonce = secrets.token_urlsafe(18)
    styles = "".join(
        f'\n    <link rel="stylesheet" href="{_asset_url(path)}">' for path in assets.styles
    )
    page = f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="csp-nonce" content="{nonce}">
    <title>modelreg GraphiQL</title>{styles}
    <script type="module" src="{_asset_url(assets.script)}"></script>
  </head>
  <body>
    <div id="graphiql">Loading…</div>
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
