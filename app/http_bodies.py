"""Request bodies, read the same way by every surface: bounded in size, in time and in depth.

**Size.** JSON bodies are at most JSON_BODY_LIMIT (1 MiB), or BATCH_BODY_LIMIT (4 MiB) where
a surface takes batches (MLflow's log-batch and log-inputs, GraphQL); uploads at most
``MODELREG_MAX_UPLOAD_SIZE``, streamed, never held in memory. A ``Content-Length`` above the
limit is refused before a byte is read and before anything else is done for the request; a
body sent without one (chunked) is refused as soon as what arrived passes the limit. Either
way the answer is BodyTooLargeError (413).

**Time.** A body that sends nothing for ``MODELREG_BODY_IDLE_TIMEOUT_SECONDS`` (10 s) is cut
off, and a JSON body must be whole within ``MODELREG_BODY_READ_TIMEOUT_SECONDS`` (30 s):
BodyTimeoutError (408). Uploads have only the idle limit: a large file takes what its network
needs, and the time the store spends writing a part is not the client's.

**Media type.** JSON endpoints take a body only as ``application/json`` (with any parameters,
such as ``charset=utf-8``); a POST needs it even when empty. Browsers send ``text/plain``,
form encodings and bodiless POSTs to other sites without asking first (no CORS preflight), so
accepting them would let any web page drive the API with a signed-in visitor's credentials.
Anything else is UnsupportedMediaTypeError (415).

**JSON.** `parse_json` refuses (InvalidJsonError, a 400 InvalidValueError) documents nested
deeper than MAX_JSON_DEPTH arrays and objects, and strings holding a NUL character or a lone
UTF-16 surrogate (what an unpaired ``\\ud800`` escape decodes to): no database stores either.
The check walks the parsed value without recursion, and the parser itself stops at
Python's recursion limit, so no body can exhaust the stack.

**Uploads.** `store_upload` streams the body into the artifact store and records it as a
package file. A failure of the store itself (no credentials, a missing bucket, a full disk)
is logged with its cause and raised as StorageUnavailableError (503), whose message names
the problem but no secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from app.errors import DomainError, InvalidValueError
from app.models import Package
from app.runtime import get_runtime
from app.services import packages
from app.services.packages import PackageResolver, RecordedHook
from app.storage import ArtifactStoreError, StoredObject

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

# MLflow documents a 1 MB limit for a request; 1 MiB leaves room for JSON's own overhead.
JSON_BODY_LIMIT = 1 * MIB
# A batch within MLflow's counts and value lengths (1000 metrics, 100 params of 6000 and 100
# tags of 8000 characters; the same for GraphQL's candidate mutations) reaches ~1.9 MB of
# text before JSON escapes any of it.
BATCH_BODY_LIMIT = 4 * MIB

# Deeper than any document a client of ours writes; far below Python's recursion limit.
MAX_JSON_DEPTH = 64

JSON_MEDIA_TYPE = "application/json"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class RequestRefusedError(DomainError):
    """A request refused at the HTTP level; every surface answers it with `status`."""

    status = 400


class BodyTooLargeError(RequestRefusedError):
    code = "payload_too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than the limit of {limit} bytes")
        self.limit = limit


class BodyTimeoutError(RequestRefusedError):
    code = "request_timeout"
    status = 408


class UnsupportedMediaTypeError(RequestRefusedError):
    code = "unsupported_media_type"
    status = 415

    def __init__(self, received: str | None) -> None:
        sent = f"'{received}'" if received else "no Content-Type"
        super().__init__(
            f"The request body must be sent as Content-Type: {JSON_MEDIA_TYPE}, not {sent}"
        )


class IncompleteBodyError(RequestRefusedError):
    code = "incomplete_body"


class StorageUnavailableError(RequestRefusedError):
    """The artifact store failed to take an upload: the server's problem, not the caller's."""

    code = "storage_unavailable"
    status = 503


class InvalidJsonError(InvalidValueError):
    pass


# --- Headers -------------------------------------------------------------------------------


def announced_length(request: Request, limit: int) -> int | None:
    """The body's ``Content-Length``, refused when above `limit`; None when not announced."""
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.strip().isdigit():
        raise InvalidValueError("Content-Length is not a number", field="Content-Length")
    length = int(header)
    if length > limit:
        raise BodyTooLargeError(limit)
    return length


def upload_size(request: Request) -> int | None:
    """The announced size of an upload, refused when above the upload size limit."""
    return announced_length(request, get_runtime(request).settings.max_upload_size)


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "").strip()
    return (length != "" and length != "0") or "transfer-encoding" in request.headers


def require_json(request: Request) -> None:
    """Refuse a POST, or any request carrying a body, that is not declared JSON."""
    if request.method != "POST" and not has_body(request):
        return
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(content_type)


# --- Reading -------------------------------------------------------------------------------


async def _chunks(
    request: Request, *, limit: int, idle_timeout: float, deadline: float | None
) -> AsyncIterator[bytes]:
    """The body's chunks, cut off past `limit` bytes, after `idle_timeout` seconds without
    a byte, or at the event loop time `deadline`."""
    announced_length(request, limit)
    loop = asyncio.get_running_loop()
    stream = request.stream()
    received = 0
    try:
        while True:
            wait = idle_timeout if deadline is None else min(idle_timeout, deadline - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0)):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BodyTimeoutError(
                    "The request body arrived too slowly and was cut off"
                ) from None
            received += len(chunk)
            if received > limit:
                raise BodyTooLargeError(limit)
            if chunk:
                yield chunk
    finally:
        await stream.aclose()


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body of a JSON request, within `limit` bytes and the read deadline."""
    settings = get_runtime(request).settings
    deadline = asyncio.get_running_loop().time() + settings.body_read_timeout_seconds
    body = bytearray()
    try:
        async for chunk in _chunks(
            request,
            limit=limit,
            idle_timeout=settings.body_idle_timeout_seconds,
            deadline=deadline,
        ):
            body += chunk
    except ClientDisconnect:
        # Nobody is left to read the answer; it only keeps the request out of the 5xx.
        raise IncompleteBodyError("The client went away before sending the whole body") from None
    return bytes(body)


def replaying(body: bytes, receive: Receive) -> Receive:
    """An ASGI `receive` that hands out `body`, already read, then waits on `receive`
    (which reports the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- JSON ----------------------------------------------------------------------------------


def parse_json(document: str | bytes) -> Any:
    """A JSON document, refused when it nests too deep or holds text no database stores."""
    try:
        value = json.loads(document)
    except RecursionError:
        raise InvalidJsonError(
            f"The JSON document nests deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError:
        raise InvalidJsonError("The request body is not valid JSON") from None
    if _may_hold_unstorable_text(document) or _nests_deeper_than(value, MAX_JSON_DEPTH):
        refuse_unstorable(value)  # finds what, and names where
    return value


# In a document parsed from bytes, NUL and surrogates can only come from \u escapes: a
# raw NUL is not JSON, a raw surrogate not UTF-8 (text already decoded is searched for
# both as well). A body without them (nearly every one) is spared `refuse_unstorable`'s
# walk over each string, which cost a 1,000-metric log-batch 9 ms.
_UNSTORABLE_ESCAPE_TEXT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _may_hold_unstorable_text(document: str | bytes) -> bool:
    if isinstance(document, bytes):
        return _UNSTORABLE_ESCAPE_BYTES.search(document) is not None
    return (
        unstorable_text(document) is not None
        or _UNSTORABLE_ESCAPE_TEXT.search(document) is not None
    )


def _nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest in `value` deeper than `limit` (strings are not looked at)."""
    pending: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def refuse_unstorable(value: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, and strings (keys too) holding NUL or a lone
    surrogate; the error names the parameter (``metrics.key``) where it can."""
    pending: list[tuple[Any, str, int]] = [(value, "", 1)]
    while pending:
        item, name, depth = pending.pop()
        if isinstance(item, str):
            _refuse_unstorable_text(item, name)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidJsonError(
                    f"The JSON document nests deeper than {MAX_JSON_DEPTH} levels",
                    field=name or None,
                )
            if isinstance(item, list):
                pending.extend((child, name, depth + 1) for child in item)
                continue
            for key, child in item.items():
                _refuse_unstorable_text(key, name)
                pending.append((child, f"{name}.{key}" if name else key, depth + 1))


def unstorable_text(text: str) -> str | None:
    """What in `text` no database column can hold, in a few words; None when nothing."""
    if "\x00" in text:
        return "a NUL character"
    if _LONE_SURROGATE.search(text):
        return "a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


def _refuse_unstorable_text(text: str, name: str) -> None:
    problem = unstorable_text(text)
    if problem is None:
        return
    raise InvalidJsonError(
        f"Invalid value for parameter '{name}': it contains {problem}", field=name or None
    )


# --- Uploads -------------------------------------------------------------------------------


async def store_upload(
    request: Request,
    *,
    project_id: int,
    package_of: PackageResolver,
    path: str,
    on_recorded: RecordedHook | None = None,
) -> StoredObject:
    """Stream the request's body into the artifact store, within the upload size limit, and
    record it as the file at `path` of the package `package_of` resolves.

    Raises BodyTooLargeError or BodyTimeoutError (nothing is stored), StorageUnavailableError
    when the store fails, ClientDisconnect when the client goes away.
    """
    runtime = get_runtime(request)
    size_hint = upload_size(request)
    body = _chunks(
        request,
        limit=runtime.settings.max_upload_size,
        idle_timeout=runtime.settings.body_idle_timeout_seconds,
        deadline=None,
    )
    stored = False

    async def package_once_stored(session: AsyncSession) -> Package:
        nonlocal stored
        stored = True
        return await package_of(session)

    try:
        return await packages.store_file(
            runtime.database,
            runtime.artifacts,
            project_id=project_id,
            package_of=package_once_stored,
            path=path,
            body=body,
            size_hint=size_hint,
            on_recorded=on_recorded,
        )
    except (DomainError, ClientDisconnect):
        raise
    except Exception as error:
        # Past the store, a failure is the database's, answered as such elsewhere.
        if stored:
            raise
        logger.exception("the artifact store could not take an upload to %r", path)
        raise StorageUnavailableError(
            f"The artifact store could not store the upload: {storage_problem(error)}"
        ) from None


def storage_problem(error: Exception) -> str:
    """What went wrong in the store, in words that name no secret."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code, message = details.get("Code", "error"), details.get("Message", "")
        return f"S3 answered {code}" + (f": {message}" if message else "")
    if isinstance(error, BotoCoreError | ArtifactStoreError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
