"""A 300 MB file goes up and comes back through the package API and through the MLflow
artifact proxy, on S3, while the server's memory stays flat."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiobotocore.session import get_session

from tests.clients import bearer
from tests.live_server import LiveServer, live_server

SIZE = 300 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024
TIMEOUT = httpx.Timeout(300)
REGION = "us-east-1"


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in bytes."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


class Generated:
    """SIZE bytes of random-looking data, produced chunk by chunk, and their sha256."""

    def __init__(self) -> None:
        self.block = os.urandom(CHUNK)
        self.sha256 = hashlib.sha256()

    async def chunks(self) -> AsyncIterator[bytes]:
        for number in range(SIZE // CHUNK):
            chunk = number.to_bytes(8, "big") + self.block[8:]
            self.sha256.update(chunk)
            yield chunk


async def round_trip(client: httpx.AsyncClient, server: LiveServer, url: str) -> dict[str, float]:
    headers = {**bearer(server.admin_token), "Content-Length": str(SIZE)}
    data = Generated()
    started = time.monotonic()
    response = await client.put(url, content=data.chunks(), headers=headers)
    uploaded = time.monotonic()
    assert response.status_code in (200, 201), response.text
    expected = data.sha256.hexdigest()
    received = hashlib.sha256()
    size = 0
    async with client.stream("GET", url, headers=bearer(server.admin_token)) as download:
        assert download.status_code == 200, await download.aread()
        assert download.headers["content-length"] == str(SIZE)
        async for chunk in download.aiter_bytes():
            received.update(chunk)
            size += len(chunk)
    downloaded = time.monotonic()
    assert size == SIZE
    assert received.hexdigest() == expected
    return {"upload_s": uploaded - started, "download_s": downloaded - uploaded}


@pytest.fixture
async def s3_server(
    database_url: str, tmp_path: Path, s3_endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LiveServer]:
    """A live server whose artifacts are in a fresh bucket of the test S3 server."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"large-{uuid.uuid4().hex[:16]}"
    async with get_session().create_client(
        "s3", endpoint_url=s3_endpoint_url, region_name=REGION
    ) as admin:
        await admin.create_bucket(Bucket=bucket)
    with live_server(
        tmp_path,
        database_url,
        artifacts=f"s3://{bucket}/objects",
        s3_endpoint_url=s3_endpoint_url,
        s3_region=REGION,
    ) as server:
        yield server


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_300_mb_through_both_surfaces_keeps_memory_flat(s3_server: LiveServer) -> None:
    server = s3_server
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        run = await client.post(
            f"{server.url}/api/2.0/mlflow/runs/create",
            json={"experiment_id": "0"},
            headers=bearer(server.admin_token),
        )
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        # Warm up: the first requests load code paths and clients that stay loaded.
        warm = await client.put(
            f"{server.url}/api/v1/projects/default/packages/generic/warm/1/x",
            content=b"x" * CHUNK,
            headers=bearer(server.admin_token),
        )
        assert warm.status_code == 201, warm.text
        before = memory(server.pid)
        package = await round_trip(
            client,
            server,
            f"{server.url}/api/v1/projects/default/packages/generic/large/1.0.0/blob.bin",
        )
        after_package = memory(server.pid)
        proxy = await round_trip(
            client,
            server,
            f"{server.url}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/blob.bin",
        )
        after = memory(server.pid)
    mib = 1024 * 1024
    print(
        f"\nserver memory (MiB): RSS before {before['VmRSS'] / mib:.1f}, "
        f"peak before {before['VmHWM'] / mib:.1f}, "
        f"peak after package API {after_package['VmHWM'] / mib:.1f}, "
        f"peak after proxy {after['VmHWM'] / mib:.1f}, RSS after {after['VmRSS'] / mib:.1f}; "
        f"growth {(after['VmHWM'] - before['VmRSS']) / mib:.1f}"
    )
    print(f"package API 300 MB: {package}; MLflow proxy 300 MB: {proxy}")
    assert after["VmHWM"] - before["VmRSS"] < MAX_GROWTH
