"""The base of the links the server hands out (package download URLs).

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

from starlette.requests import HTTPConnection

from app.settings import Settings

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


def _first(header: str | None) -> str:
    return (header or "").split(",", 1)[0].strip()
