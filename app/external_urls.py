"""The links the server hands out (package download URLs, `file_url`), and their base.

Links are never built from the request's ``Host`` header: any client sets it, and a link
that reflects it points wherever the client chose (cache poisoning, phishing links in
shared answers). The base is, in order:

1. ``MODELREG_EXTERNAL_URL`` when set (it may carry a path prefix:
   ``https://example.com/modelreg``);
2. with ``MODELREG_TRUSTED_PROXY_HEADERS``, the ``X-Forwarded-Proto`` and
   ``X-Forwarded-Host`` that the proxy in front of the server sets (the first, client-facing
   value of each; a host that is not a plain ``name[:port]`` is ignored);
3. otherwise nothing: links are paths from the server's root (``/api/v1/...``), which a
   browser resolves against the page it loaded and a script joins to the URL it already
   uses, as MLflow's ``mlflow-artifacts:/`` URIs are resolved against the tracking URI.
"""

from __future__ import annotations

import re
import urllib.parse

from starlette.requests import HTTPConnection, Request

from app.runtime import get_runtime
from app.settings import Settings

# Where the package API serves a project's packages (`app.rest.packages` routes under it).
PACKAGES_PATH = "/api/v1/projects/{project}/packages"

_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def external_base(connection: HTTPConnection, settings: Settings) -> str:
    """What absolute links start with, without a trailing slash; "" for root-relative ones."""
    if settings.external_url:
        return settings.external_url
    if settings.trusted_proxy_headers:
        host = _first(connection.headers.get("x-forwarded-host"))
        proto = _first(connection.headers.get("x-forwarded-proto")) or connection.url.scheme
        if host and _HOST.fullmatch(host) and proto in ("http", "https"):
            return f"{proto}://{host}"
    return ""


def file_url(request: Request, project: str, ref: str, path: str) -> str:
    """Where a package file downloads from: `ref` is a version id or ``candidate:<iid>``."""
    base = external_base(request, get_runtime(request).settings)
    location = PACKAGES_PATH.format(project=urllib.parse.quote(project, safe=""))
    return f"{base}{location}/ml_models/{ref}/files/{urllib.parse.quote(path)}"


def _first(header: str | None) -> str:
    return (header or "").split(",", 1)[0].strip()


# Where MLflow's artifact proxy serves a project's logged models (`app.mlflow.artifacts`).
LOGGED_MODEL_ARTIFACTS_PATH = (
    "/projects/{project}/mlflow/api/2.0/mlflow-artifacts/artifacts/{experiment}/models/{model}"
    "/artifacts"
)


def logged_model_file_url(
    request: Request, project: str, experiment_id: int, model_id: str, path: str
) -> str:
    """Where a logged model's file downloads from, through MLflow's artifact proxy:
    `experiment_id` is its model's iid, `model_id` the ``m-...`` id."""
    base = external_base(request, get_runtime(request).settings)
    location = LOGGED_MODEL_ARTIFACTS_PATH.format(
        project=urllib.parse.quote(project, safe=""), experiment=experiment_id, model=model_id
    )
    return f"{base}{location}/{urllib.parse.quote(path)}"
