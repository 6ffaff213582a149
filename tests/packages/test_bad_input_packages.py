"""No input gets a 5xx from the package API: every route, with project names, version
references, package names, versions and file paths that exist, that do not, or that are
no names at all; odd `Range` and checksum headers; bodies empty, binary or larger than a
small upload; anonymous, authenticated or with garbage credentials. Errors answer the
API's ``{"error", "message"}`` JSON.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bad_input import (
    EDGE_INTEGERS,
    Drawn,
    Seed,
    assert_rest_answer,
    bounded,
    callers,
    credentials,
    quote,
    seed,
    send,
    strings,
)
from tests.live_server import LiveServer

BASE = "/api/v1/projects"
RANGES = [
    "bytes=0-0",
    "bytes=2-",
    "bytes=-3",
    "bytes=9-2",
    "bytes=100-200",
    "bytes=0-1,4-5",
    "bytes=-0",
    "bytes=99999999999999999999999999-",
    "bytes=" + "9" * 5000 + "-",
    "items=0-1",
    "bytes=\xff-",
    "",
]
CHECKSUMS = ["", "0" * 64, "g" * 64, "a" * 63, "A" * 64, "\xff" * 64, "x" * 5000]


def _segments(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), strings().filter(lambda text: len(text) < 500))


@st.composite
def package_requests(draw: st.DrawFn, server: LiveServer, seed: Seed) -> Drawn:
    headers = credentials(server, draw(callers()))
    project = quote(draw(_segments(["default", "default", "no-such-project", "%FF"])))
    refs = [
        "candidate:1",
        f"candidate:{seed.version}",
        seed.version,
        "candidate:",
        "candidate:-1",
        *(str(number) for number in EDGE_INTEGERS),
        *(f"candidate:{number}" for number in EDGE_INTEGERS),
    ]
    paths = ["data/file.bin", "MLmodel", "model/MLmodel", "..", "../x", "a//b", "/abs", "a\\b"]
    path = "/".join(
        quote(segment) for segment in draw(st.lists(_segments(paths), min_size=1, max_size=4))
    )
    route = draw(st.sampled_from(["list", "ml_model", "generic"]))
    if route == "list":
        url = f"{BASE}/{project}/packages/ml_models/{quote(draw(_segments(refs)))}/files"
    elif route == "ml_model":
        url = f"{BASE}/{project}/packages/ml_models/{quote(draw(_segments(refs)))}/files/{path}"
    else:
        name = quote(draw(_segments([seed.package_name, "-bad", "a" * 300, "ok.name_1"])))
        version = quote(draw(_segments([seed.package_version, "1", "", "..", "v" * 300])))
        url = f"{BASE}/{project}/packages/generic/{name}/{version}/{path}"
    method = "GET" if route == "list" else draw(st.sampled_from(["GET", "PUT"]))
    if method == "GET":
        if draw(st.booleans()):
            headers |= {b"Range": draw(st.sampled_from(RANGES)).encode("latin-1")}
        return Drawn("GET", url, headers)
    if draw(st.booleans()):
        headers |= {b"X-Checksum-SHA256": draw(st.sampled_from(CHECKSUMS)).encode("latin-1")}
    content = draw(st.one_of(st.binary(max_size=1000), st.sampled_from([b"", b"\x00" * 2**20])))
    return Drawn("PUT", url, headers, content)


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> Seed:
    return seed(server)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@given(data=st.data())
@bounded(max_examples=150)
def test_no_package_api_request_gets_a_5xx(
    server: LiveServer, seeded: Seed, client: httpx.Client, data: st.DataObject
) -> None:
    request = data.draw(package_requests(server, seeded), label="request")
    assert_rest_answer(send(client, request))
