"""GraphiQL, served by modelreg itself: a browser asking ``GET /graphql`` for HTML gets the
``graphiql`` entry of the frontend build, a page whose scripts, styles and fonts all come
from this server (`app.frontend`), so it works with no network beyond it.

GraphiQL's stylesheet embeds its fonts and icons as ``data:`` URLs, which the pages'
policy admits. Its dialogs add ``<style>`` elements: the page carries a fresh nonce that
the policy admits for them, and no other inline style.
"""

from __future__ import annotations

from starlette.responses import Response

from app.frontend import frontend_page


def graphiql_page() -> Response:
    """The GraphiQL page, under a policy that lets it load from this server only."""
    return frontend_page(
        entry="graphiql", title="modelreg GraphiQL", root_id="graphiql", with_style_nonce=True
    )
