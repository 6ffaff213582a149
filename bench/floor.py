"""The floor: a do-nothing server answering the MLflow endpoints the workload uses with
canned, valid bodies, so that its timings are the cost of HTTP and the client alone.

Uploads are read to the end and dropped; a download streams as many bytes as were
uploaded to that path.

    python -m bench.floor --port 5000
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from bench.shapes import (
    INGEST_METRICS,
    INGEST_PARAMS,
    INGEST_STEPS,
    OPTIMIZERS,
    SEARCH_METRICS,
    SEARCH_PARAMS,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
CHUNK = bytes(1024 * 1024)
EXPERIMENT_ID = "1"


def _run(run_id: str, params: list[str], metrics: list[str], step: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "info": {
            "run_id": run_id,
            "run_uuid": run_id,
            "experiment_id": EXPERIMENT_ID,
            "run_name": "floor-run",
            "user_id": "floor",
            "status": "RUNNING",
            "start_time": now,
            "artifact_uri": f"mlflow-artifacts:/{EXPERIMENT_ID}/{run_id}/artifacts",
            "lifecycle_stage": "active",
        },
        "data": {
            "params": [
                {"key": name, "value": OPTIMIZERS[0] if name == "optimizer" else "0.1"}
                for name in params
            ],
            "metrics": [
                {"key": name, "value": 0.5, "timestamp": now, "step": step} for name in metrics
            ],
            "tags": [{"key": "mlflow.runName", "value": "floor-run"}],
        },
        "inputs": {},
        "outputs": {},
    }


def _model_version(name: str, version: str, run_id: str = "") -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "name": name,
        "version": version,
        "creation_timestamp": now,
        "last_updated_timestamp": now,
        "current_stage": "None",
        "source": f"runs:/{run_id}/model",
        "run_id": run_id,
        "status": "READY",
        "aliases": ["champion"],
    }


class Floor:
    """The ASGI application; all state is in memory and forgotten at exit."""

    RUN_ID_PLACEHOLDER = "0" * 32

    def __init__(self) -> None:
        self.upload_sizes: dict[str, int] = {}
        self.experiments = itertools.count(1)
        self.versions = itertools.count(1)
        full_run = _run(self.RUN_ID_PLACEHOLDER, INGEST_PARAMS, INGEST_METRICS, INGEST_STEPS - 1)
        self.run_template = json.dumps({"run": full_run}).encode()
        self.search_pages: dict[int, bytes] = {}
        now = int(time.time() * 1000)
        self.history = json.dumps(
            {
                "metrics": [
                    {"key": "m0", "value": 0.5, "timestamp": now, "step": step}
                    for step in range(INGEST_STEPS)
                ]
            }
        ).encode()

    def search_page(self, count: int) -> bytes:
        page = self.search_pages.get(count)
        if page is None:
            runs = [_run(uuid.uuid4().hex, SEARCH_PARAMS, SEARCH_METRICS, 0) for _ in range(count)]
            page = self.search_pages[count] = json.dumps({"runs": runs}).encode()
        return page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        method: str = scope["method"]
        path: str = scope["path"]
        if path.startswith(ARTIFACTS + "/"):
            await self.artifact(method, path.removeprefix(ARTIFACTS + "/"), receive, send)
            return
        body = await _read_body(receive)
        query = parse_qs(scope["query_string"].decode())
        answer = self.answer(method, path, body, query)
        if answer is None:
            print(f"floor: no canned answer for {method} {path}", file=sys.stderr, flush=True)
            error = {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"}
            await _respond(send, 404, json.dumps(error).encode())
        else:
            await _respond(send, 200, answer)

    def answer(
        self, method: str, path: str, body: bytes, query: dict[str, list[str]]
    ) -> bytes | None:
        endpoint = (method, path[len(API) :] if path.startswith(API + "/") else path)
        if endpoint == ("POST", "/runs/create"):
            return self.run_template.replace(self.RUN_ID_PLACEHOLDER.encode(), _new_id())
        if endpoint == ("GET", "/runs/get"):
            run_id = query.get("run_id", query.get("run_uuid", [self.RUN_ID_PLACEHOLDER]))[0]
            return self.run_template.replace(self.RUN_ID_PLACEHOLDER.encode(), run_id.encode())
        if endpoint in {("POST", "/runs/log-batch"), ("POST", "/runs/set-tag")}:
            return b"{}"
        if endpoint == ("POST", "/runs/update"):
            run_id = json.loads(body).get("run_id", self.RUN_ID_PLACEHOLDER)
            info = _run(run_id, [], [], 0)["info"] | {"status": "FINISHED"}
            return json.dumps({"run_info": info}).encode()
        if endpoint == ("POST", "/runs/search"):
            return self.search_page(int(json.loads(body).get("max_results", 1000)))
        if endpoint == ("GET", "/metrics/get-history"):
            return self.history
        if endpoint == ("POST", "/experiments/create"):
            return json.dumps({"experiment_id": str(next(self.experiments))}).encode()
        if endpoint == ("GET", "/experiments/get"):
            experiment_id = query.get("experiment_id", [EXPERIMENT_ID])[0]
            experiment = {
                "experiment_id": experiment_id,
                "name": f"experiment_{experiment_id}",
                "artifact_location": f"mlflow-artifacts:/{experiment_id}",
                "lifecycle_stage": "active",
            }
            return json.dumps({"experiment": experiment}).encode()
        if endpoint == ("POST", "/registered-models/create"):
            name = json.loads(body)["name"]
            return json.dumps({"registered_model": {"name": name}}).encode()
        if endpoint == ("POST", "/model-versions/create"):
            request = json.loads(body)
            version = _model_version(
                request["name"], str(next(self.versions)), request.get("run_id", "")
            )
            return json.dumps({"model_version": version}).encode()
        if endpoint == ("GET", "/model-versions/get"):
            version = _model_version(query["name"][0], query["version"][0])
            return json.dumps({"model_version": version}).encode()
        if endpoint == ("GET", "/registered-models/get"):
            return json.dumps({"registered_model": {"name": query["name"][0]}}).encode()
        if endpoint == ("POST", "/logged-models/search"):
            return b'{"models": []}'
        if endpoint == ("POST", "/experiments/search"):
            return b'{"experiments": []}'
        if endpoint == ("POST", "/registered-models/alias"):
            return b"{}"
        if endpoint == ("GET", "/registered-models/alias"):
            return json.dumps({"model_version": _model_version(query["name"][0], "1")}).encode()
        if endpoint == ("GET", ARTIFACTS):
            return b"{}"
        if endpoint == ("GET", "/api/3.0/mlflow/server-info"):
            return b'{"store_type": "SqlStore"}'
        if endpoint in {("GET", "/health"), ("GET", "/healthz")}:
            return b"OK"
        return None

    async def artifact(self, method: str, path: str, receive: Receive, send: Send) -> None:
        if method == "PUT":
            size = 0
            more = True
            while more:
                message = await receive()
                size += len(message.get("body", b""))
                more = message.get("more_body", False)
            self.upload_sizes[path] = size
            await _respond(send, 200, b"{}")
            return
        size = self.upload_sizes.get(path, 0)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(size).encode()),
                ],
            }
        )
        remaining = size
        while remaining > 0:
            chunk = CHUNK[: min(remaining, len(CHUNK))]
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if size == 0:
            await send({"type": "http.response.body", "body": b""})


def _new_id() -> bytes:
    return uuid.uuid4().hex.encode()


async def _read_body(receive: Receive) -> bytes:
    parts = []
    more = True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(Floor(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
