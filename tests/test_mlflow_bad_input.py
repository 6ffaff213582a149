"""No bad input gets a 5xx from the MLflow surface (the client would retry it for
minutes): every endpoint answers malformed requests with MLflow error JSON and a 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.mlflow.routes import ENDPOINTS
from tests.live_server import LiveServer

# Values of the wrong type or shape for any parameter name an endpoint might read.
PARAMETER_NAMES = [
    "experiment_id",
    "experiment_ids",
    "run_id",
    "run_ids",
    "name",
    "new_name",
    "key",
    "value",
    "timestamp",
    "step",
    "metrics",
    "params",
    "tags",
    "max_results",
    "page_token",
    "filter",
    "filter_string",
    "order_by",
    "version",
    "stage",
    "alias",
    "source",
    "status",
    "view_type",
    "run_view_type",
    "metric_key",
    "start_step",
    "end_step",
    "datasets",
    "models",
    "model_id",
    "path",
]
BAD_VALUES: list[Any] = [
    None,
    {},
    [],
    [1, {"a": []}],
    -1,
    2**70,
    1.5e308,
    "",
    "x" * 10_000,
    "\x00",
    "../../etc/passwd",
    "' or 1=1 --",
    True,
]


def _bodies() -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = [{}]
    for value in BAD_VALUES:
        bodies.append({name: value for name in PARAMETER_NAMES})
    return bodies


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_every_mlflow_endpoint_answers_bad_input_without_a_5xx(server: LiveServer) -> None:
    failures: list[tuple[str, str, str, object]] = []
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        for method, path, _handler in ENDPOINTS:
            url = f"/api/2.0{path}".replace("{model_id}", "m-0").replace("{tag_key}", "k")
            for body in _bodies():
                try:
                    if method == "GET":
                        # Long values go in POST bodies; a URL has its own limit.
                        params = {
                            k: str(v)
                            for k, v in body.items()
                            if v is not None and len(str(v)) < 2000
                        }
                        response = await client.get(url, params=params)
                    else:
                        response = await client.request(method, url, json=body)
                except httpx.HTTPError as error:
                    failures.append((method, path, str(body)[:80], repr(error)))
                    continue
                if response.status_code >= 500 or (
                    response.status_code >= 400 and "error_code" not in response.json()
                ):
                    failures.append((method, path, str(body)[:80], response.status_code))
        raw = await client.post("/api/2.0/mlflow/runs/log-batch", content=b"\xff\xfe not json")
        assert raw.status_code == 400
    assert failures == [], "\n".join(map(str, failures))
