"""Where the web UI shows an object: paths from the server's root (join them to
``MODELREG_EXTERNAL_URL`` for an absolute link), laid out as GitLab lays out its pages,
with ``/-/`` between a project and what it holds:

- a project: ``/<project>``
- a model: ``/<project>/-/models/<name>``
- a version: ``/<project>/-/models/<name>/versions/<semver>``
- a candidate: ``/<project>/-/models/<name>/candidates/<iid>``

Each segment is percent-encoded (a project path's own ``/`` stays a separator).

The first segments the server's other surfaces own (`SURFACE_SEGMENTS`) are no project's
page, so no project takes them as its path."""

from __future__ import annotations

import urllib.parse

SURFACE_SEGMENTS = frozenset(
    {
        "api",
        "ajax-api",
        "graphql",
        "static",
        "sign-in",
        "sign-out",
        "healthz",
        "readyz",
        "metrics",
        "health",
        "version",
        "projects",
    }
)


def project_page(project: str) -> str:
    return "/" + urllib.parse.quote(project, safe="/")


def model_page(project: str, model: str) -> str:
    return f"{project_page(project)}/-/models/{urllib.parse.quote(model, safe='')}"


def version_page(project: str, model: str, version: str) -> str:
    return f"{model_page(project, model)}/versions/{urllib.parse.quote(version, safe='')}"


def candidate_page(project: str, model: str, iid: int) -> str:
    return f"{model_page(project, model)}/candidates/{iid}"
