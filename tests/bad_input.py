"""The vocabulary of the bad-input suites (`test_bad_input_*.py`, `test_request_stalls.py`).

- **Hostile values**: any JSON value of the wrong type or out of every range a parameter
  might have: integers at and beyond the 32- and 64-bit limits, 1e308, NaN and infinities,
  empty, huge (up to 8 MiB), NUL, lone-surrogate, bidi and astral strings, nested lists
  and objects, and literals no JSON encoder writes (1200-level nesting, ``1e400``).
- **Bodies**: `encode_json` writes a body holding those literals; `query_string` writes
  parameters as a GET query, lone surrogates percent-encoded as the raw bytes they are.
- **Callers**: anonymous, the administrator, and credentials that are garbage.
- **Targets**: `seed` makes an experiment, a run with metrics, a registered model with a
  version, a logged model, an artifact and a generic package on a live server, so drawn
  requests also hit rows that exist.
- **Verdicts**: every answer is below 500 and, when it is an error, in its surface's own
  convention (MLflow ``{"error_code", "message"}``; GraphQL ``{"errors": [...]}``; the
  package API ``{"error", "message"}``).

Runs are bounded and reproducible for CI: `bounded` fixes the seed and the number of
examples, and skips shrinking (each failure reports the request it sent as it was).
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.live_server import LiveServer

JSON_CONTENT = {b"Content-Type": b"application/json"}
DEEP_LEVELS = 1200
"""Deeper than the interpreter's default recursion limit of 1000."""

# Literals spliced into an encoded body in place of their placeholder strings.
RAW_LITERALS = {
    "\x1braw:deep-list\x1b": "[" * DEEP_LEVELS + "]" * DEEP_LEVELS,
    "\x1braw:deep-object\x1b": '{"a":' * DEEP_LEVELS + "1" + "}" * DEEP_LEVELS,
    "\x1braw:1e400\x1b": "1e400",
    "\x1braw:-1e400\x1b": "-1e400",
    "\x1braw:long-number\x1b": "9" * 5000,
}

EDGE_INTEGERS = [
    -1,
    0,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    -(10**23),
]
EDGE_FLOATS = [1e308, -1e308, 1.5e308, 5e-324, -0.0, 1e30, -1e23, 0.5]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\udbff\udc00\ud800",
    "\u202eevil",
    "\ufeff",
    "😀" * 16,
    "é" * 300,
    "../../etc/passwd",
    "%00",
    "%2e%2e/%2e%2e",
    "' or 1=1 --",
    '"; DROP TABLE models; --',
    "<script>alert(1)</script>",
    "[" * 500,
    "*" * 1000,
    "NaN",
    "Infinity",
    "-1",
    "9223372036854775808",
    "18446744073709551616",
    "1e400",
    "2024-01-01T00:00:00",
    "true",
    "null",
    "{}",
    "a/b",
    "a\\b",
    "\n\r\t",
]
# (character, length): made when drawn, so no strategy's description holds megabytes.
HUGE_STRINGS = [("x", 2**16), ("é", 2**19), ("y", 2**23)]


@functools.cache
def strings() -> st.SearchStrategy[str]:
    """Any text: short arbitrary unicode, the odd strings above, now and then a huge one."""
    return st.one_of(
        st.text(max_size=30),
        st.sampled_from(ODD_STRINGS),
        st.tuples(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), st.integers(30, 400)
        ).map(lambda piece: piece[0] * piece[1]),
        st.sampled_from(HUGE_STRINGS).map(lambda huge: huge[0] * huge[1]),
    )


@functools.cache
def integers() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-10, 1000), st.sampled_from(EDGE_INTEGERS), st.integers())


@functools.cache
def floats() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS + NON_FINITE))


def raw_literals() -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(RAW_LITERALS))


@functools.cache
def hostile_values() -> st.SearchStrategy[Any]:
    """A JSON value of any type, shape and size."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        integers(),
        floats(),
        strings(),
        raw_literals(),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(st.text(max_size=8), st.sampled_from(ODD_STRINGS)), children, max_size=4
            ),
        ),
        max_leaves=10,
    )


def encode_json(body: Any) -> bytes:
    """The body as JSON text, with `RAW_LITERALS` spliced in and lone surrogates kept as
    the escapes (``"\\ud800"``) a client would send."""
    text = json.dumps(body)
    for placeholder, literal in RAW_LITERALS.items():
        text = text.replace(json.dumps(placeholder), literal)
    return text.encode()


def query_value(value: Any) -> str:
    """How a value reads as a query parameter: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return RAW_LITERALS.get(value, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return encode_json(value).decode()


QUERY_BUDGET = 6000
"""Characters of query string at most: a request line over the HTTP parser's limit is
refused before the application sees it."""


def query_string(params: dict[str, Any]) -> str:
    """The parameters as a query string, a list as a repeated parameter; parameters that
    would push it past `QUERY_BUDGET` are left out."""
    parts: list[str] = []
    size = 0
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            part = f"{quote(name)}={quote(query_value(item))}"
            if size + len(part) > QUERY_BUDGET:
                continue
            parts.append(part)
            size += len(part) + 1
    return "&".join(parts)


def quote(text: str) -> str:
    """Percent-encoding of any text, a lone surrogate as its (invalid) UTF-8 bytes."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def bounded(max_examples: int) -> settings:
    """Hypothesis settings for a suite that talks to a live server on CI's two cores."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


# --- Callers -------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
ADMINISTRATOR = "administrator"
GARBAGE_CREDENTIALS: list[bytes] = [
    b"Bearer \xff\xfe",
    b"Bearer not-a-token",
    b"Bearer " + b"t" * 5000,
    b"Basic !!!not base64",
    b"Basic /w==",  # one byte 0xff: no UTF-8 user:password
    b"Basic " + b"YWRtaW46" * 2000,
    b"Negotiate abc",
    b"bearer",
]


def callers() -> st.SearchStrategy[str | bytes]:
    """Who sends a request: mostly anonymous or the administrator, sometimes garbage."""
    return st.one_of(
        st.sampled_from([ANONYMOUS, ADMINISTRATOR, ADMINISTRATOR]),
        st.sampled_from(GARBAGE_CREDENTIALS),
    )


def credentials(server: LiveServer, caller: str | bytes) -> dict[bytes, bytes]:
    """The Authorization header of a caller drawn from `callers`."""
    if caller == ANONYMOUS:
        return {}
    if caller == ADMINISTRATOR:
        return {b"Authorization": f"Bearer {server.admin_token}".encode()}
    assert isinstance(caller, bytes)
    return {b"Authorization": caller}


# --- Rows to aim at ------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """What `seed` made on the server: valid values for drawn requests to use."""

    experiment_id: str
    run_id: str
    metric_key: str
    model_name: str
    version: str
    logged_model_id: str
    artifact_path: str
    package_name: str
    package_version: str

    def names(self) -> list[str]:
        """Every id and name above, and those every server has."""
        return [
            "0",
            "1",
            "default",
            self.experiment_id,
            self.run_id,
            self.metric_key,
            self.model_name,
            self.version,
            self.logged_model_id,
            self.package_name,
            self.package_version,
        ]


def seed(server: LiveServer) -> Seed:
    """Rows and files made through the public APIs as the administrator."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:

        def call(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.request(method, f"/api/2.0/mlflow/{path}", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        experiment_id = call("POST", "experiments/create", {"name": "Bad input"})["experiment_id"]
        run = call("POST", "runs/create", {"experiment_id": experiment_id, "run_name": "seed"})
        run_id = run["run"]["info"]["run_id"]
        call(
            "POST",
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [
                    {"key": "loss", "value": 1 / (step + 1), "timestamp": 1000 + step, "step": step}
                    for step in range(50)
                ],
                "params": [{"key": "lr", "value": "0.1"}],
                "tags": [{"key": "team", "value": "bad input"}],
            },
        )
        call("POST", "registered-models/create", {"name": "bad-input-model"})
        version = call(
            "POST",
            "model-versions/create",
            {"name": "bad-input-model", "source": f"runs:/{run_id}/model", "run_id": run_id},
        )["model_version"]["version"]
        call(
            "POST",
            "registered-models/alias",
            {"name": "bad-input-model", "alias": "champion", "version": version},
        )
        logged = call(
            "POST", "logged-models", {"experiment_id": experiment_id, "name": "seed-model"}
        )["model"]["info"]["model_id"]
        artifact_path = f"{experiment_id}/{run_id}/artifacts/notes/readme.txt"
        uploaded = client.put(f"/api/2.0/mlflow-artifacts/artifacts/{artifact_path}", content=b"hi")
        assert uploaded.status_code == 200, uploaded.text
        package = client.put(
            "/api/v1/projects/default/packages/generic/seed-package/1.0.0/data/file.bin",
            content=b"0123456789",
        )
        assert package.status_code == 201, package.text
    return Seed(
        experiment_id=experiment_id,
        run_id=run_id,
        metric_key="loss",
        model_name="bad-input-model",
        version=version,
        logged_model_id=logged,
        artifact_path=artifact_path,
        package_name="seed-package",
        package_version="1.0.0",
    )


# --- Requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """One request, ready to send."""

    method: str
    url: str
    headers: dict[bytes, bytes]
    content: bytes | None = None

    def __repr__(self) -> str:
        content = self.content if self.content is None else self.content[:300]
        return f"Drawn({self.method} {self.url[:300]!r}, {self.headers!r}, {content!r})"


def send(client: httpx.Client, request: Drawn) -> httpx.Response:
    return client.request(
        request.method, request.url, headers=request.headers, content=request.content
    )


# --- Verdicts ------------------------------------------------------------------------------


def describe(response: httpx.Response) -> str:
    """The request and its answer, shortened, for a failure message."""
    request = response.request
    try:
        sent = request.content[:400]
    except httpx.RequestNotRead:
        sent = b"<streamed>"
    return (
        f"{request.method} {str(request.url)[:400]}\n"
        f"sent {sent!r}\n"
        f"answered {response.status_code} {response.content[:600]!r}"
    )


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise AssertionError(f"the answer is not JSON:\n{describe(response)}") from None


def assert_below_500(response: httpx.Response) -> None:
    assert response.status_code < 500, f"a server error:\n{describe(response)}"


def assert_mlflow_answer(response: httpx.Response) -> None:
    """MLflow's convention: JSON always; an error is ``{"error_code", "message"}``."""
    assert_below_500(response)
    if response.status_code >= 400:
        body = json_body(response)
        assert isinstance(body, dict) and isinstance(body.get("error_code"), str), (
            f"no MLflow error JSON:\n{describe(response)}"
        )
        assert isinstance(body.get("message"), str), f"no message:\n{describe(response)}"


def assert_graphql_answer(response: httpx.Response) -> None:
    """GraphQL over HTTP: a JSON object with `data` or a list of `errors`, each with a
    message."""
    assert_below_500(response)
    body = json_body(response)
    assert isinstance(body, dict) and ("data" in body or "errors" in body), (
        f"no GraphQL answer:\n{describe(response)}"
    )
    for error in body.get("errors") or []:
        assert isinstance(error.get("message"), str), (
            f"an error without message:\n{describe(response)}"
        )
        assert error["message"] != "Internal server error", (
            f"an internal error:\n{describe(response)}"
        )
    if response.status_code >= 400:
        assert body.get("errors"), f"a failed request without errors:\n{describe(response)}"


def assert_rest_answer(response: httpx.Response) -> None:
    """The package API's convention: an error is ``{"error", "message"}``."""
    assert_below_500(response)
    if response.status_code >= 400:
        body = json_body(response)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (
            f"no package API error JSON:\n{describe(response)}"
        )
        assert isinstance(body.get("message"), str), f"no message:\n{describe(response)}"


Verdict = Callable[[httpx.Response], None]
