"""A real HTTP server on loopback that receives webhooks, as a user's endpoint would: it
keeps every request it got and answers each with the next status of its script (200
once the script is used up). It runs in a thread of the test process, so it answers
whatever the event loop of the test is doing."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.services import LOOPBACK


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: str
    at: float

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event(self) -> str:
        return f"{self.json['entity']}.{self.json['action']}"

    @property
    def delivery_id(self) -> str:
        return self.headers["X-MLflow-Delivery-Id"]


@dataclass
class Receiver:
    url: str
    # Statuses to answer, in order, with their extra headers; then 200.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # While set, requests wait for `release` before they are answered (a slow target).
    holding: threading.Event | None = None

    def hold(self) -> None:
        """Keep the requests that arrive from now on waiting until `release`."""
        self.holding = threading.Event()

    def release(self) -> None:
        if self.holding is not None:
            self.holding.set()

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests with these statuses (a status, or one with headers)."""
        with self.lock:
            self.script += [
                status if isinstance(status, tuple) else (status, {}) for status in statuses
            ]

    async def wait_for(self, count: int, *, seconds: float = 30.0) -> list[Received]:
        """The first `count` requests, once that many arrived (fails after `seconds`);
        the event loop keeps running meanwhile (in-process job runners deliver there)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received[:count])
            await asyncio.sleep(0.02)
        with self.lock:
            raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")

    def _next_status(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            return self.script.pop(0) if self.script else (200, {})


def mlflow_accepts(secret: str, request: Received) -> bool:
    """Whether MLflow's check of a webhook signature accepts the request: the signature
    MLflow's own delivery code computes for its delivery id, timestamp and body, compared
    in constant time (MLflow's documented receiver check)."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    expected = _generate_hmac_signature(
        secret,
        request.headers["X-MLflow-Delivery-Id"],
        request.headers["X-MLflow-Timestamp"],
        request.body,
    )
    given = request.headers.get("X-MLflow-Signature", "")
    return hmac.compare_digest(expected, given) and given.startswith("v1,")


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A receiver listening on a free loopback port until the block ends."""
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            status, headers = receiver._next_status()
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, time.monotonic())
                )
            if receiver.holding is not None:
                receiver.holding.wait()
            answer = json.dumps({"status": status}).encode()
            # The sender may be gone by now (a killed worker, a timed-out attempt).
            with contextlib.suppress(ConnectionError):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `received`."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    receiver = Receiver(url=f"http://{LOOPBACK}:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join()
