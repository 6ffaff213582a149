"""The source of an import: a live MLflow tracking server (2.x or 3.x), read only
through its REST API, so whatever store it keeps runs and artifacts in.

Every list is read page by page with the server's page tokens: experiments, runs (with
their params, tags, inputs and outputs), each metric's whole history, logged models
(MLflow 3; a server without them has none), registered models and their versions.
Artifacts are listed recursively and downloaded as byte streams, never whole files in
memory: through the artifact proxy (``mlflow-artifacts:`` URIs, what ``mlflow server``
hands out by default), or for runs of a store the server reads itself, through its
``get-artifact`` route. Metric values keep NaN and the infinities (MLflow writes them as
the JSON literals ``NaN``, ``Infinity`` and ``-Infinity``).

A source that cannot be reached, or answers with an error, raises `SourceError` with the
request and what the server said.
"""

from __future__ import annotations

import contextlib
import posixpath
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

REST = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
PROXY_SCHEME = "mlflow-artifacts"
# Page sizes within every MLflow server's bounds.
EXPERIMENTS_PAGE = 1000
RUNS_PAGE = 1000
HISTORY_PAGE = 25_000
LOGGED_MODELS_PAGE = 100
REGISTERED_MODELS_PAGE = 1000
VERSIONS_PAGE = 1000
DOWNLOAD_CHUNK = 1024 * 1024
TIMEOUT_SECONDS = 120.0


class SourceError(Exception):
    """The MLflow server could not be read."""


@dataclass(frozen=True)
class ArtifactFile:
    """A file of a run's or a logged model's artifacts: its path from their root."""

    path: str
    size: int | None


@dataclass(frozen=True)
class ArtifactRoot:
    """Where a run's or a logged model's artifacts are read: the proxy path of their root,
    or (for a run of a store the server reads itself) the run id."""

    proxy_path: str | None = None
    run_id: str | None = None


class MlflowSource:
    """A client of one MLflow tracking server; use it as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        )

    async def __aenter__(self) -> MlflowSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    # --- requests ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        try:
            response = await self._http.request(method, path, params=params, json=body)
        except httpx.HTTPError as error:
            raise SourceError(f"{method} {self.url}{path}: {error!r}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SourceError(
                f"{method} {self.url}{path} answered {response.status_code}: {response.text[:500]}"
            )
        answer: dict[str, Any] = response.json()
        return answer

    async def _answer(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        answer = await self._request(method, path, params=params, body=body)
        assert answer is not None
        return answer

    async def _pages(
        self,
        method: str,
        path: str,
        key: str,
        request: dict[str, Any],
        *,
        missing_ok: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item under `key` of every page of a list endpoint."""
        token: str | None = None
        while True:
            paged = request | ({"page_token": token} if token else {})
            if method == "GET":
                answer = await self._request(method, path, params=paged, missing_ok=missing_ok)
            else:
                answer = await self._request(method, path, body=paged, missing_ok=missing_ok)
            if answer is None:
                return
            for item in answer.get(key, []):
                yield item
            token = answer.get("next_page_token")
            if not token:
                return

    # --- tracking --------------------------------------------------------------------------

    async def experiments(self) -> list[dict[str, Any]]:
        """Every experiment, deleted ones included, in id order."""
        found = [
            experiment
            async for experiment in self._pages(
                "POST",
                f"{REST}/experiments/search",
                "experiments",
                {"max_results": EXPERIMENTS_PAGE, "view_type": "ALL"},
            )
        ]
        return sorted(found, key=lambda experiment: int(experiment["experiment_id"]))

    def runs(
        self, experiment_ids: Sequence[str], *, since_ms: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every run of the experiments (deleted ones included), with its data, inputs
        and outputs; only those started at or after `since_ms` if given."""
        request: dict[str, Any] = {
            "experiment_ids": list(experiment_ids),
            "max_results": RUNS_PAGE,
            "run_view_type": "ALL",
            "order_by": ["attributes.start_time ASC"],
        }
        if since_ms is not None:
            request["filter"] = f"attributes.start_time >= {since_ms}"
        return self._pages("POST", f"{REST}/runs/search", "runs", request)

    async def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """Every value a run logged for a metric, as the server stores them."""
        return [
            point
            async for point in self._pages(
                "GET",
                f"{REST}/metrics/get-history",
                "metrics",
                {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE},
            )
        ]

    def logged_models(self, experiment_ids: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
        """The logged models of the experiments (none on a server before MLflow 3)."""
        return self._pages(
            "POST",
            f"{REST}/logged-models/search",
            "models",
            {"experiment_ids": list(experiment_ids), "max_results": LOGGED_MODELS_PAGE},
            missing_ok=True,
        )

    # --- registry --------------------------------------------------------------------------

    def registered_models(self) -> AsyncIterator[dict[str, Any]]:
        return self._pages(
            "GET",
            f"{REST}/registered-models/search",
            "registered_models",
            {"max_results": REGISTERED_MODELS_PAGE},
        )

    async def model_versions(self, name: str) -> list[dict[str, Any]]:
        """The versions of a registered model, by number."""
        quote = '"' if "'" in name else "'"
        found = [
            version
            async for version in self._pages(
                "GET",
                f"{REST}/model-versions/search",
                "model_versions",
                {"filter": f"name = {quote}{name}{quote}", "max_results": VERSIONS_PAGE},
            )
        ]
        return sorted(found, key=lambda version: int(version["version"]))

    # --- artifacts -------------------------------------------------------------------------

    def artifact_root(self, artifact_uri: str, *, run_id: str | None = None) -> ArtifactRoot:
        """Where the artifacts under `artifact_uri` are read from."""
        parsed = urllib.parse.urlparse(artifact_uri)
        if parsed.scheme == PROXY_SCHEME:
            return ArtifactRoot(proxy_path=parsed.path.strip("/"))
        if run_id is not None:
            return ArtifactRoot(run_id=run_id)
        raise SourceError(
            f"artifacts at '{artifact_uri}' are not served by {self.url}; start the MLflow "
            "server with --serve-artifacts"
        )

    async def artifact_files(self, root: ArtifactRoot) -> AsyncIterator[ArtifactFile]:
        """Every file under the root, depth first, by path."""
        pending = [""]
        while pending:
            directory = pending.pop()
            entries = await self._list(root, directory)
            pending.extend(sorted((path for path, is_dir, _ in entries if is_dir), reverse=True))
            for path, is_dir, size in sorted(entries):
                if not is_dir:
                    yield ArtifactFile(path, size)

    async def _list(self, root: ArtifactRoot, directory: str) -> list[tuple[str, bool, int | None]]:
        if root.proxy_path is not None:
            where = posixpath.join(root.proxy_path, directory) if directory else root.proxy_path
            answer = await self._answer("GET", PROXY, params={"path": where})
        else:
            params = {"run_id": root.run_id, **({"path": directory} if directory else {})}
            answer = await self._answer("GET", f"{REST}/artifacts/list", params=params)
        entries = []
        for entry in answer.get("files", []):
            # The proxy names entries from the directory, the run listing from the root.
            name = posixpath.basename(entry["path"].rstrip("/"))
            path = posixpath.join(directory, name) if directory else name
            size = int(entry["file_size"]) if "file_size" in entry else None
            entries.append((path, bool(entry.get("is_dir")), size))
        return entries

    @contextlib.asynccontextmanager
    async def artifact_stream(
        self, root: ArtifactRoot, path: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of one artifact, as a stream of chunks."""
        if root.proxy_path is not None:
            url = f"{PROXY}/{urllib.parse.quote(posixpath.join(root.proxy_path, path))}"
            params: dict[str, str] = {}
        else:
            assert root.run_id is not None
            url, params = "/get-artifact", {"path": path, "run_uuid": root.run_id}
        try:
            async with self._http.stream("GET", url, params=params) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise SourceError(
                        f"GET {self.url}{url} answered {response.status_code}: "
                        f"{response.text[:500]}"
                    )
                yield response.aiter_bytes(DOWNLOAD_CHUNK)
        except httpx.HTTPError as error:
            raise SourceError(f"GET {self.url}{url}: {error!r}") from None
