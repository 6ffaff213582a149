"""Sending one webhook request, signed as MLflow signs, to an address that was checked.

Signature (MLflow's, `mlflow/webhooks/delivery.py`): HMAC-SHA256 with the hook's secret
over ``<delivery id>.<unix timestamp>.<body>``, sent as ``X-MLflow-Signature: v1,<base64>``
beside ``X-MLflow-Timestamp`` and ``X-MLflow-Delivery-Id``. A hook without a secret is
sent unsigned, as MLflow sends it.

Targets: http(s) only. The host is resolved and every address it resolves to must be a
public one (not loopback, private, link-local, shared, reserved or multicast) unless
private targets are allowed (`MODELREG_WEBHOOK_ALLOW_PRIVATE`); the request then connects
to the checked address itself, with the URL's host in `Host` and in TLS's server name, so
a second resolution (DNS rebinding) cannot swap the address. No proxy from the
environment is used and redirects are not followed: either would make the peer another
address than the one checked.

Each attempt has one deadline for connecting, sending and reading the answer; the
answer's body is read up to `EXCERPT_LENGTH` only. The outcome never raises for the
target's failures: it is recorded (status code, duration, excerpts, error).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import hmac
import ipaddress
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from app.errors import InvalidValueError

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"

# How much of a request and of an answer the delivery log keeps.
EXCERPT_LENGTH = 2000
USER_AGENT = "modelreg-webhooks"


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings of every attempt, built once: loading the CA bundle costs more
    than a whole delivery to a nearby receiver."""
    return ssl.create_default_context()


class RefusedTargetError(InvalidValueError):
    """The URL is not one webhooks may be sent to."""


def sign(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """MLflow's signature header value for this delivery."""
    content = f"{delivery_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def check_url(url: str) -> urllib.parse.SplitResult:
    """The parts of an http(s) URL with a host, or RefusedTargetError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RefusedTargetError(
            f"Webhook URL '{url}' must be an http:// or https:// URL with a host", field="url"
        )
    if parsed.username is not None or parsed.password is not None:
        raise RefusedTargetError("Webhook URL must not carry credentials", field="url")
    try:
        parsed.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise RefusedTargetError(f"Webhook URL '{url}' has an invalid port", field="url") from None
    return parsed


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_checked(url: str, *, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to, every one checked (see the module's
    docstring); RefusedTargetError when one may not be a target or none is found."""
    parsed = check_url(url)
    host = parsed.hostname
    assert host is not None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise RefusedTargetError(
            f"Webhook URL host '{host}' does not resolve", field="url"
        ) from None
    addresses = list(dict.fromkeys(str(entry[4][0]) for entry in found))
    if not addresses:
        raise RefusedTargetError(f"Webhook URL host '{host}' does not resolve", field="url")
    if not allow_private:
        for address in addresses:
            if not _is_public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise RefusedTargetError(
                    f"Webhook URL host '{host}' resolves to {address}, a loopback, private "
                    "or link-local address; the server does not send webhooks there",
                    field="url",
                )
    return addresses


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the answer's status (None when none came), how long it
    took, excerpts of the request and the answer, and the error when there was one."""

    status_code: int | None
    duration_ms: int
    request_excerpt: str
    response_excerpt: str | None
    error: str | None
    # Seconds the target asked us to wait (Retry-After), if it did.
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(
    *, delivery_id: str, body: str, secret: str | None, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a delivery attempt made now (or at `timestamp`)."""
    moment = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: moment,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, delivery_id, moment, body)
    return headers


async def send(
    url: str,
    body: str,
    *,
    delivery_id: str,
    secret: str | None,
    allow_private: bool,
    timeout_seconds: float,
) -> Outcome:
    """POST `body` to `url` once, signed, to a checked address (module docstring)."""
    headers = signed_headers(delivery_id=delivery_id, body=body, secret=secret)
    request_excerpt = _request_excerpt(url, headers, body)
    started = time.monotonic()

    def outcome(
        status: int | None, answer: str | None, error: str | None, retry_after: float | None
    ) -> Outcome:
        return Outcome(
            status_code=status,
            duration_ms=round((time.monotonic() - started) * 1000),
            request_excerpt=request_excerpt,
            response_excerpt=answer,
            error=error,
            retry_after=retry_after,
        )

    try:
        addresses = await resolve_checked(url, allow_private=allow_private)
    except RefusedTargetError as refused:
        return outcome(None, None, refused.message, None)
    target = httpx.URL(url)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    headers["Host"] = target.netloc.decode("ascii")
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(
                timeout=timeout_seconds, verify=_tls(), trust_env=False, follow_redirects=False
            ) as client,
            client.stream(
                "POST",
                target.copy_with(host=addresses[0]),
                content=body.encode(),
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            answer = await _read_excerpt(response)
            return outcome(
                response.status_code,
                f"HTTP {response.status_code}\n{answer}",
                None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}",
                _retry_after(response.headers.get("Retry-After")),
            )
    except TimeoutError:
        return outcome(None, None, f"no answer within {timeout_seconds:g} s", None)
    except httpx.HTTPError as error:
        return outcome(None, None, f"{type(error).__name__}: {error}", None)


async def _read_excerpt(response: httpx.Response) -> str:
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= EXCERPT_LENGTH:
            break
    return kept[:EXCERPT_LENGTH].decode("utf-8", errors="replace")


def _request_excerpt(url: str, headers: dict[str, str], body: str) -> str:
    lines = [f"POST {url}", *(f"{name}: {value}" for name, value in headers.items()), "", body]
    return "\n".join(lines)[:EXCERPT_LENGTH]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
