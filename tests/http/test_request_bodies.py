"""Request bodies on every surface: too large, too slow, too deep, or holding text no
database stores, each refused with a 4xx in the surface's own convention while the server
keeps answering others; uploads within MODELREG_MAX_UPLOAD_SIZE on the MLflow artifact
proxy too, and a store that fails answered with JSON."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiobotocore.session import get_session

from app.http_bodies import MAX_JSON_DEPTH, MIB
from tests.live_server import LiveServer, copy_sqlite, live_server
from tests.request_support import AdminApp, RawClient, admin_app

FORTY_EIGHT_MB = 48 * 1000 * 1000
HEALTHZ_BOUND_SECONDS = 0.5
REGION = "us-east-1"

LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
GENERIC_UPLOAD = "/api/v1/projects/default/packages/generic/tool/1.0.0/blob.bin"
PROXY_UPLOAD = "/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/blob.bin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[LiveServer]:
    """A live server that cuts off a body after 1 s without a byte or 3 s in all."""
    workdir = tmp_path_factory.mktemp("bodies")
    with live_server(
        workdir,
        copy_sqlite(sqlite_template, workdir),
        body_idle_timeout_seconds="1",
        body_read_timeout_seconds="3",
    ) as running:
        yield running


def peak_memory(pid: int) -> int:
    """The peak resident set (VmHWM) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmHWM":
            return int(value.split()[0]) * 1024
    raise AssertionError("no VmHWM")


def json_head(length: int | None = None) -> dict[str, str]:
    head = {"Content-Type": "application/json"}
    if length is None:
        return head | {"Transfer-Encoding": "chunked"}
    return head | {"Content-Length": str(length)}


# --- Size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "convention"),
    [
        ("POST", LOG_BATCH, "mlflow"),
        ("POST", "/graphql", "graphql"),
        ("PUT", PROXY_UPLOAD.format(run_id="0123456789abcdef"), "mlflow"),
        ("PUT", GENERIC_UPLOAD, "rest"),
    ],
)
def test_an_announced_oversized_body_is_refused_before_it_is_sent(
    server: LiveServer, method: str, path: str, convention: str
) -> None:
    # Anonymous, as the attacker was: the size is judged before anything else.
    size = 11 * 1024**3 if method == "PUT" else FORTY_EIGHT_MB
    with RawClient(server.url) as client:
        client.send_head(method, path, json_head(size))
        status, body = client.response()
    answer = json.loads(body)
    assert status == 413
    if convention == "mlflow":
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    elif convention == "graphql":
        assert answer["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    else:
        assert answer["error"] == "payload_too_large"


def test_healthz_answers_while_48_mb_bodies_stream_in(server: LiveServer) -> None:
    statuses: dict[str, int] = {}
    peak_before = peak_memory(server.pid)

    def send(name: str, path: str, announced: bool) -> None:
        block = b"[" + b"1," * (512 * 1024)
        with RawClient(server.url) as client:
            client.send_head("POST", path, json_head(FORTY_EIGHT_MB if announced else None))
            sent = 0
            while sent < FORTY_EIGHT_MB:
                chunk = block[: FORTY_EIGHT_MB - sent]
                if announced:
                    client.send(chunk)
                else:
                    client.send_chunk(chunk)
                sent += len(chunk)
                # Paced, so that the probes below run while the bodies are on their way.
                time.sleep(0.02)
            if not announced:
                client.send(b"0\r\n\r\n")
            statuses[name], _ = client.response()

    senders = [
        threading.Thread(target=send, args=("log-batch chunked", LOG_BATCH, False)),
        threading.Thread(target=send, args=("log-batch announced", LOG_BATCH, True)),
        threading.Thread(target=send, args=("graphql chunked", "/graphql", False)),
    ]
    for sender in senders:
        sender.start()
    latencies = []
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        while any(sender.is_alive() for sender in senders):
            started = time.monotonic()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - started)
    for sender in senders:
        sender.join()

    assert statuses == {
        "log-batch chunked": 413,
        "log-batch announced": 413,
        "graphql chunked": 413,
    }
    assert len(latencies) >= 5 and max(latencies) < HEALTHZ_BOUND_SECONDS, latencies
    # Refused bodies are never held: 144 MB went by and the peak barely moved.
    assert peak_memory(server.pid) - peak_before < 64 * 1024 * 1024


# --- Time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("POST", LOG_BATCH, "BAD_REQUEST"),
        ("POST", "/graphql", "REQUEST_TIMEOUT"),
        ("PUT", GENERIC_UPLOAD, "request_timeout"),
    ],
)
def test_a_body_that_stops_arriving_is_cut_off(
    server: LiveServer, method: str, path: str, code: str
) -> None:
    headers = json_head(1000) | {"Authorization": f"Bearer {server.admin_token}"}
    with RawClient(server.url) as client:
        client.send_head(method, path, headers)
        client.send(b'{"run_id":')
        status, body = client.response()
    assert status == 408
    assert code in body.decode()


def test_a_trickling_json_body_is_cut_off_at_its_deadline(server: LiveServer) -> None:
    with RawClient(server.url) as client:
        client.send_head("POST", LOG_BATCH, json_head(100_000))
        # A byte every 0.2 s never trips the idle limit, only the whole-body deadline.
        for _ in range(150):
            if client.answered(wait=0.2):
                break
            client.send(b" ")
        status, body = client.response()
    assert status == 408
    assert json.loads(body)["error_code"] == "BAD_REQUEST"


# --- JSON ----------------------------------------------------------------------------------


def nested(levels: int) -> str:
    """A JSON array nested `levels` deep."""
    return "[" * levels + "]" * levels


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[AdminApp]:
    async with admin_app(database_url, tmp_path) as running:
        yield running


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_deeply_nested_json_is_refused_with_a_400(app: AdminApp) -> None:
    run_id = await app.run_id()
    for levels in (MAX_JSON_DEPTH, 1200, 100_000):
        body = f'{{"run_id": "{run_id}", "metrics": {nested(levels)}}}'
        response = await app.client.post(
            LOG_BATCH, content=body, headers=app.headers | json_head(len(body))
        )
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    def graphql_body(levels: int) -> str:
        # The body's object and `variables` are two of the levels.
        return f'{{"query": "{{ version }}", "variables": {{"v": {nested(levels - 2)}}}}}'

    fits = await app.client.post(
        "/graphql", content=graphql_body(MAX_JSON_DEPTH), headers=json_head(None)
    )
    assert fits.status_code == 200, fits.text
    for levels in (MAX_JSON_DEPTH + 1, 1200, 100_000):
        refused = await app.client.post(
            "/graphql", content=graphql_body(levels), headers=json_head(None)
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    over_get = await app.client.get(
        "/graphql", params={"query": "{ version }", "variables": json.dumps({"v": [[[[]]]]})}
    )
    assert over_get.status_code == 200, over_get.text
    too_deep_get = await app.client.get(
        "/graphql", params={"query": "{ version }", "variables": f'{{"v": {nested(1200)}}}'}
    )
    assert too_deep_get.status_code == 400


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_lone_surrogates_and_nul_are_refused_and_pairs_kept(app: AdminApp) -> None:
    for body in (
        b'{"experiment_id": "\\ud800"}',
        b'{"experiment_id": "0", "run_name": "a\\u0000"}',
    ):
        response = await app.client.post(
            "/api/2.0/mlflow/runs/create", content=body, headers=app.headers | json_head(len(body))
        )
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    refused = await app.client.post(
        "/graphql",
        content=b'{"query": "{ version }", "variables": {"name": "\\udfff"}}',
        headers=json_head(None),
    )
    assert refused.status_code == 400
    assert "surrogate" in refused.json()["errors"][0]["message"]

    # An escaped surrogate pair is one astral character: kept.
    body = b'{"experiment_id": "0", "run_name": "fast \\ud83d\\ude80"}'
    created = await app.client.post(
        "/api/2.0/mlflow/runs/create", content=body, headers=app.headers | json_head(len(body))
    )
    assert created.status_code == 200, created.text
    assert created.json()["run"]["info"]["run_name"] == "fast \U0001f680"


# --- 64-bit integers -----------------------------------------------------------------------


async def test_metric_steps_and_timestamps_must_fit_64_bits(app: AdminApp) -> None:
    run_id = await app.run_id()
    bad: list[dict[str, Any]] = [
        {"step": 2**63},
        {"timestamp": 2**64},
        {"step": -(2**63) - 1},
        {"timestamp": -(2**63) - 1},
        {"step": 1.5},
        {"step": True},
        {"timestamp": "soon"},
    ]
    for change in bad:
        metric = {"key": "loss", "value": 0.5, "timestamp": 1, "step": 0} | change
        single = await app.mlflow("runs/log-metric", {"run_id": run_id, **metric})
        batch = await app.mlflow("runs/log-batch", {"run_id": run_id, "metrics": [metric]})
        for response in (single, batch):
            assert response.status_code == 400, (change, response.text)
            assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    infinite = b'{"run_id": "%s", "key": "loss", "value": 1, "timestamp": 1e400}' % run_id.encode()
    response = await app.client.post(
        "/api/2.0/mlflow/runs/log-metric", content=infinite, headers=app.headers | json_head(None)
    )
    assert response.status_code == 400, response.text

    # The edges of the range are stored and read back as sent.
    for step, timestamp in ((2**63 - 1, -(2**63)), (-(2**63), 2**63 - 1)):
        logged = await app.mlflow(
            "runs/log-metric",
            {"run_id": run_id, "key": "edge", "value": 1.0, "timestamp": timestamp, "step": step},
        )
        assert logged.status_code == 200, logged.text
    history = await app.client.get(
        "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "edge"},
        headers=app.headers,
    )
    assert history.status_code == 200, history.text
    points = {(int(m["step"]), int(m["timestamp"])) for m in history.json()["metrics"]}
    assert points == {(2**63 - 1, -(2**63)), (-(2**63), 2**63 - 1)}
    loss = await app.client.get(
        "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss"},
        headers=app.headers,
    )
    assert loss.json().get("metrics", []) == []


# --- Uploads -------------------------------------------------------------------------------


def stored_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_upload_limit_holds_on_the_mlflow_artifact_proxy(
    database_url: str, tmp_path: Path
) -> None:
    async with admin_app(database_url, tmp_path, max_upload_size=1000) as app:
        run_id = await app.run_id()
        url = PROXY_UPLOAD.format(run_id=run_id)

        declared = await app.client.put(url, content=b"x" * 1001, headers=app.headers)
        assert declared.status_code == 413
        assert declared.json() == {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "The request body is larger than the limit of 1000 bytes",
        }

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 300

        streamed = await app.client.put(url, content=chunks(), headers=app.headers)
        assert streamed.status_code == 413
        # Nothing stored: no object, no partial file, no listed artifact.
        assert stored_files(app.artifacts) == []
        listing = await app.client.get(
            "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id}, headers=app.headers
        )
        assert listing.json().get("files", []) == []
        assert (await app.client.get(url, headers=app.headers)).status_code == 404

        fits = await app.client.put(url, content=b"z" * 1000, headers=app.headers)
        assert fits.status_code == 200, fits.text
        assert (await app.client.get(url, headers=app.headers)).content == b"z" * 1000


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_upload_the_store_fails_answers_json_and_logs_the_cause(
    database_url: str,
    tmp_path: Path,
    s3_endpoint_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-shown")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"gone-{uuid.uuid4().hex[:16]}"
    async with get_session().create_client(
        "s3", endpoint_url=s3_endpoint_url, region_name=REGION
    ) as admin:
        await admin.create_bucket(Bucket=bucket)
        async with admin_app(
            database_url,
            tmp_path,
            artifacts=f"s3://{bucket}/objects",
            s3_endpoint_url=s3_endpoint_url,
            s3_region=REGION,
        ) as app:
            run_id = await app.run_id()
            # The bucket disappears under the running server.
            await admin.delete_bucket(Bucket=bucket)
            caplog.set_level(logging.ERROR, logger="app.http_bodies")

            proxy = await app.client.put(
                PROXY_UPLOAD.format(run_id=run_id), content=b"model", headers=app.headers
            )
            package = await app.client.put(GENERIC_UPLOAD, content=b"tool", headers=app.headers)

    assert proxy.status_code == 503
    assert proxy.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "NoSuchBucket" in proxy.json()["message"]
    assert package.status_code == 503
    assert package.json()["error"] == "storage_unavailable"
    assert "NoSuchBucket" in package.json()["message"]
    for answer in (proxy, package):
        assert "test-secret-never-shown" not in answer.text
    logged = [record for record in caplog.records if record.name == "app.http_bodies"]
    assert len(logged) == 2
    assert all(record.exc_info for record in logged)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_json_bodies_have_mlflow_s_size_limits(app: AdminApp) -> None:
    run_id = await app.run_id()
    # A batch as large as MLflow's counts and lengths allow is taken ...
    batch = {
        "run_id": run_id,
        "params": [{"key": f"p{i}", "value": "v" * 6000} for i in range(100)],
        "tags": [{"key": f"t{i}", "value": "t" * 8000} for i in range(100)],
        "metrics": [{"key": f"m{i}", "value": 1.5, "timestamp": 1, "step": 0} for i in range(800)],
    }
    assert len(json.dumps(batch)) > 1 * MIB
    taken = await app.mlflow("runs/log-batch", batch)
    assert taken.status_code == 200, taken.text[:200]
    # ... other endpoints stop at 1 MiB.
    too_large = await app.mlflow(
        "runs/set-tag", {"run_id": run_id, "key": "k", "value": "x" * (1 * MIB)}
    )
    assert too_large.status_code == 413
    assert too_large.json()["error_code"] == "INVALID_PARAMETER_VALUE"
