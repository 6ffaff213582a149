"""Nothing one request can do stalls the server or swells it: while each of the heaviest
requests anyone can send is under way, `/healthz` answers within HEALTH_SECONDS and the
server process's resident memory stays under RSS_BYTES, and the request itself is
answered below 500 in its surface's convention.

The requests are the ones the hardening issue measured: a 48 MB JSON body and a 200 MB
body streamed slowly (MLflow and GraphQL), a body that announces more than it sends, JSON
nested 1,200 levels deep, a GraphQL document whose fragments fan out to 2^22 spreads,
`get-history-bulk-interval` naming one long run 100 times, and descriptions built to make
Markdown rendering slow (2 MB; 100,000 nested brackets, link openers, emphasis markers)
written and then read back as HTML. Anonymous where the issue sent them anonymously.

A watcher thread polls `/healthz` back to back (each poll's latency counts against the
request under way when it started) and another samples ``VmRSS`` of the server's process
from ``/proc`` every 20 ms.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.services.validation import MAX_DESCRIPTION_LENGTH
from tests.bad_input import (
    ADMINISTRATOR,
    JSON_CONTENT,
    RAW_LITERALS,
    Seed,
    assert_graphql_answer,
    assert_mlflow_answer,
    credentials,
    encode_json,
    seed,
)
from tests.live_server import LiveServer
from tests.request_support import RawClient

HEALTH_SECONDS = 0.5
RSS_BYTES = 300 * 2**20
MB = 1_000_000
HISTORY_POINTS = 20_000


# --- Watching the server -------------------------------------------------------------------


@dataclass
class PhaseRecord:
    slowest_health: float = 0.0
    largest_rss: int = 0
    outcome: str = ""


@dataclass
class Watcher:
    """Health latency and resident memory of the server, by the phase under way."""

    server: LiveServer
    phase: str = "idle"
    records: dict[str, PhaseRecord] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)

    def record(self, phase: str) -> PhaseRecord:
        return self.records.setdefault(phase, PhaseRecord())

    def poll_health(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=120) as client:
            while not self.stopped.is_set():
                phase, started = self.phase, time.monotonic()
                try:
                    healthy = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    healthy = False
                took = time.monotonic() - started if healthy else float("inf")
                record = self.record(phase)
                record.slowest_health = max(record.slowest_health, took)
                time.sleep(0.02)

    def sample_memory(self) -> None:
        status = Path(f"/proc/{self.server.pid}/status")
        while not self.stopped.is_set():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    record = self.record(self.phase)
                    record.largest_rss = max(record.largest_rss, rss)
            time.sleep(0.02)

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watcher]:
        threads = [
            threading.Thread(target=self.poll_health, daemon=True),
            threading.Thread(target=self.sample_memory, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            for thread in threads:
                thread.join(timeout=150)

    def during(self, phase: str, request: Callable[[], str]) -> None:
        """Run one heavy request as `phase`, then let a health poll land after it."""
        self.phase = phase
        try:
            self.record(phase).outcome = request()
        except AssertionError as failure:
            self.record(phase).outcome = f"FAILED: {failure}"
        time.sleep(0.3)
        self.phase = "idle"

    def report(self) -> str:
        return "\n".join(
            f"{phase}: /healthz {record.slowest_health:.2f} s, "
            f"RSS {record.largest_rss / 2**20:.0f} MiB, {record.outcome[:300]}"
            for phase, record in self.records.items()
        )


# --- Requests ------------------------------------------------------------------------------


def stream_body(
    server: LiveServer,
    path: str,
    chunks: Iterable[bytes],
    *,
    length: int | None,
    pause: float = 0.0,
) -> tuple[int, bytes]:
    """Send a body chunk by chunk (with Content-Length `length`, or chunked) and stop as
    soon as the server answers; its status and body."""
    with RawClient(server.url) as client:
        headers = {"Content-Type": "application/json"}
        if length is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(length)
        client.send_head("POST", path, headers)
        for chunk in chunks:
            if client.answered():
                break
            try:
                client.send_chunk(chunk) if length is None else client.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        else:
            if length is None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    client.send(b"0\r\n\r\n")
        return client.response()


def json_filler(total: int, chunk: int = MB) -> Iterator[bytes]:
    """`total` bytes of one JSON object whose strings never end early."""
    head = b'{"run_id": "x", "params": [{"key": "k", "value": "'
    tail = b'"}]}'
    yield head
    remaining = total - len(head) - len(tail)
    while remaining > 0:
        size = min(chunk, remaining)
        yield b"v" * size
        remaining -= size
    yield tail


def verdict(status: int, body: bytes, surface: str) -> str:
    """The outcome of a raw request, checked against its surface's convention."""
    request = httpx.Request("POST", f"http://server/{surface}")
    response = httpx.Response(status, content=body, request=request)
    if surface == "graphql":
        assert_graphql_answer(response)
    else:
        assert_mlflow_answer(response)
    return f"{status} {body[:120]!r}"


def posted(client: httpx.Client, path: str, body: bytes, headers: dict[bytes, bytes]) -> str:
    response = client.post(path, content=body, headers=headers | JSON_CONTENT)
    if path == "/graphql":
        assert_graphql_answer(response)
    else:
        assert_mlflow_answer(response)
    return f"{response.status_code} {response.content[:120]!r}"


def fan_out(levels: int) -> str:
    fragments = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    fragments.append(f"fragment F{levels} on Query {{ version }}")
    return "query { ...F0 } " + " ".join(fragments)


LIMIT = MAX_DESCRIPTION_LENGTH
SLOW_MARKDOWN = {
    # The sizes, beyond the limit: refused.
    "2 MB of mixed Markdown": ("**[a](b) _c_ `d` " * 200_000)[: 2 * MB],
    "100,000 nested brackets": "[" * 100_000,
    "100,000 link openers": "[a](" * 100_000,
    "100,000 emphasis markers": "*a " * 100_000,
    # The same shapes at the limit: stored, and rendered.
    "nested brackets up to the limit": "[" * LIMIT,
    "link openers up to the limit": ("[a](" * LIMIT)[:LIMIT],
    "emphasis markers up to the limit": ("*a " * LIMIT)[:LIMIT],
    "nested quotes and lists up to the limit": ("> - " * LIMIT)[:LIMIT],
}


def describe_and_read(
    server: LiveServer, client: httpx.Client, seeded: Seed, model_id: str, text: str
) -> str:
    """Set the model's description through MLflow, then read it as HTML through GraphQL."""
    admin = credentials(server, ADMINISTRATOR)
    written = client.patch(
        "/api/2.0/mlflow/registered-models/update",
        content=encode_json({"name": seeded.model_name, "description": text}),
        headers=admin | JSON_CONTENT,
    )
    assert_mlflow_answer(written)
    read = client.post(
        "/graphql",
        content=encode_json(
            {
                "query": "query($id: ID!) { model(id: $id) { descriptionHtml } }",
                "variables": {"id": model_id},
            }
        ),
        headers=admin | JSON_CONTENT,
    )
    assert_graphql_answer(read)
    if written.status_code == 200:
        assert isinstance(read.json()["data"]["model"]["descriptionHtml"], str), read.text
    return f"write {written.status_code}, read {read.status_code} ({len(read.content)} bytes)"


# --- The test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> Seed:
    made = seed(server)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        steps = itertools.count(1000)
        for _ in range(HISTORY_POINTS // 1000):
            metrics = [
                {"key": made.metric_key, "value": 0.5, "timestamp": 1, "step": next(steps)}
                for _ in range(1000)
            ]
            response = client.post(
                "/api/2.0/mlflow/runs/log-batch", json={"run_id": made.run_id, "metrics": metrics}
            )
            assert response.status_code == 200, response.text
    return made


def _model_id(server: LiveServer, client: httpx.Client, name: str) -> str:
    query = (
        '{ project(path: "default") { models(first: 50) { edges { node { id displayName } } } } }'
    )
    response = client.post(
        "/graphql", json={"query": query}, headers=credentials(server, ADMINISTRATOR)
    )
    edges = response.json()["data"]["project"]["models"]["edges"]
    return next(str(edge["node"]["id"]) for edge in edges if edge["node"]["displayName"] == name)


def test_no_heavy_request_stalls_healthz_or_swells_the_server(
    server: LiveServer, seeded: Seed
) -> None:
    anonymous: dict[bytes, bytes] = {}
    admin = credentials(server, ADMINISTRATOR)
    deep = RAW_LITERALS["\x1braw:deep-list\x1b"].encode()
    with (
        httpx.Client(base_url=server.url, timeout=180) as client,
        Watcher(server).watching() as watcher,
    ):
        model_id = _model_id(server, client, seeded.model_name)
        time.sleep(0.5)  # the idle baseline
        batch = "/api/2.0/mlflow/runs/log-batch"
        watcher.during(
            "log-batch, 48 MB JSON body",
            lambda: verdict(
                *stream_body(server, batch, json_filler(48 * MB), length=48 * MB), "mlflow"
            ),
        )
        watcher.during(
            "log-batch, 200 MB chunked body sent slowly",
            lambda: verdict(
                *stream_body(server, batch, json_filler(200 * MB), length=None, pause=0.01),
                "mlflow",
            ),
        )
        watcher.during(
            "log-batch, a body announcing 1000 bytes that sends 10",
            lambda: verdict(*stream_body(server, batch, [b'{"run_id":'], length=1000), "mlflow"),
        )
        watcher.during(
            "log-batch, JSON nested 1,200 levels",
            lambda: posted(client, batch, b'{"run_id": "x", "metrics": ' + deep + b"}", anonymous),
        )
        watcher.during(
            "GraphQL, 48 MB body",
            lambda: verdict(
                *stream_body(server, "/graphql", json_filler(48 * MB), length=48 * MB), "graphql"
            ),
        )
        watcher.during(
            "GraphQL, 2^22 fragment spreads",
            lambda: posted(client, "/graphql", encode_json({"query": fan_out(22)}), anonymous),
        )
        watcher.during(
            "GraphQL, variables nested 1,200 levels",
            lambda: posted(
                client,
                "/graphql",
                b'{"query": "{ version }", "variables": {"v": ' + deep + b"}}",
                anonymous,
            ),
        )
        run_ids = "&".join([f"run_ids={seeded.run_id}"] * 100)
        watcher.during(
            f"get-history-bulk-interval, one run of {HISTORY_POINTS} points named 100 times",
            lambda: _bulk_interval(client, f"{run_ids}&metric_key={seeded.metric_key}", admin),
        )
        for name, text in SLOW_MARKDOWN.items():
            watcher.during(
                f"description of {name}, written and read as HTML",
                functools.partial(describe_and_read, server, client, seeded, model_id, text),
            )
    report = watcher.report()
    failures = [
        phase
        for phase, record in watcher.records.items()
        if record.slowest_health > HEALTH_SECONDS
        or record.largest_rss > RSS_BYTES
        or record.outcome.startswith("FAILED")
    ]
    assert failures == [], report


def _bulk_interval(client: httpx.Client, query: str, headers: dict[bytes, bytes]) -> str:
    response = client.get(
        f"/api/2.0/mlflow/metrics/get-history-bulk-interval?{query}", headers=headers
    )
    assert_mlflow_answer(response)
    return f"{response.status_code}, {len(response.content)} bytes"
