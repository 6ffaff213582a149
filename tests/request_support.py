"""Driving the server the way a hostile or careless HTTP client does: the in-process app
with an administrator's token and chosen settings, and a raw socket that sends a request's
head and body at its own pace and reads the answer whenever it comes."""

from __future__ import annotations

import contextlib
import http.client
import secrets
import select
import socket
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.db import Database
from app.services import auth, users
from tests.clients import app_settings, bearer, serving

ANSWER_SECONDS = 30
"""How long a raw client waits for an answer before the test fails."""


@dataclass
class AdminApp:
    """The in-process app, its database, and an administrator's token."""

    client: httpx.AsyncClient
    database: Database
    token: str
    artifacts: Path

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    async def mlflow(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST a JSON body to an MLflow endpoint, as the mlflow client does."""
        return await self.client.post(f"/api/2.0/mlflow/{path}", json=body, headers=self.headers)

    async def run_id(self) -> str:
        response = await self.mlflow("runs/create", {"experiment_id": "0"})
        assert response.status_code == 200, response.text
        return str(response.json()["run"]["info"]["run_id"])


@contextlib.asynccontextmanager
async def admin_app(database_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[AdminApp]:
    """The app on `database_url` (at the newest migration) with `settings` changed, and a
    new administrator."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            username = f"admin-{secrets.token_hex(4)}"
            admin = await users.create_user(session, username=username, is_admin=True)
            _, token = await auth.create_token(session, user=admin, name="admin")
        chosen = app_settings(tmp_path, database_url).model_copy(update=settings)
        async with serving(chosen) as client:
            yield AdminApp(client, database, token, chosen.artifact_directory)
    finally:
        await database.dispose()


class RawClient:
    """One HTTP/1.1 connection whose request goes out in pieces the test chooses."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname is not None and parsed.port is not None
        self.host = f"{parsed.hostname}:{parsed.port}"
        self.socket = socket.create_connection(
            (parsed.hostname, parsed.port), timeout=ANSWER_SECONDS
        )

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exception: object) -> None:
        self.socket.close()

    def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a ``Transfer-Encoding: chunked`` body."""
        self.socket.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def answered(self, wait: float = 0) -> bool:
        """Whether the server has started answering (within `wait` seconds)."""
        readable, _, _ = select.select([self.socket], [], [], wait)
        return bool(readable)

    def response(self) -> tuple[int, bytes]:
        """The status and body of the answer, waiting for it as long as ANSWER_SECONDS."""
        answer = http.client.HTTPResponse(self.socket)
        answer.begin()
        return answer.status, answer.read()
