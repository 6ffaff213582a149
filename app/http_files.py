"""File downloads, answered the same way by every surface that serves stored package files.

`file_download` answers a GET (or HEAD) for one `PackageFile` with its bytes streamed
from the artifact store:

- ``Accept-Ranges: bytes``; a single ``Range: bytes=first-last``, ``bytes=first-`` or
  ``bytes=-suffix`` answers 206 with ``Content-Range: bytes <start>-<end>/<size>`` and only
  those bytes; a range starting past the end (or any range of an empty file) answers 416
  with ``Content-Range: bytes */<size>`` and no body. Several ranges, a malformed header or
  ``last < first`` ask for the whole file (200), as HTTP allows a server to.
- ``Content-Length`` of what the body holds; HEAD answers the headers of the whole file
  without opening it.
- ``Content-Disposition: attachment`` with the file's base name (RFC 6266: a plain
  ``filename`` when it needs no quoting, else ``filename*=utf-8''...``), and
  ``X-Content-Type-Options: nosniff`` with a media type guessed from the name: a stored
  file never renders as a page of this origin.
- ``ETag`` of the file's sha256 when it is known.

The stream is closed however the response ends, the client going away included
(`ObjectResponse`). A file whose bytes the store no longer holds is NotFoundError with the
caller's message. Each surface checks the caller may read the file, finds it, adds its own
headers and maps errors to its own convention; the rest is here.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
import urllib.parse
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.errors import NotFoundError
from app.models import PackageFile
from app.runtime import get_runtime
from app.storage import ObjectStream, RangeNotSatisfiableError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def file_download(
    request: Request,
    file: PackageFile,
    *,
    missing: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The answer to a GET or HEAD of `file`; `headers` are the surface's own additions and
    `missing` the message when the store no longer holds the file's bytes."""
    answer = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": attachment_disposition(posixpath.basename(file.path)),
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    if file.sha256:
        answer["ETag"] = f'"{file.sha256}"'
    media_type = mimetypes.guess_type(file.path)[0] or "application/octet-stream"
    if request.method == "HEAD":
        answer["Content-Length"] = str(file.size)
        return Response(headers=answer, media_type=media_type)
    start, end = parse_byte_range(request.headers.get("range"))
    try:
        stream = await get_runtime(request).artifacts.open(file.storage_key, start=start, end=end)
    except RangeNotSatisfiableError as error:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{error.size}"})
    except NotFoundError:
        raise NotFoundError(missing, field="path") from None
    answer["Content-Length"] = str(stream.content_length)
    status = 200
    if start is not None or end is not None:
        status = 206
        answer["Content-Range"] = f"bytes {stream.start}-{stream.end}/{stream.size}"
    return ObjectResponse(stream, status_code=status, headers=answer, media_type=media_type)


class ObjectResponse(StreamingResponse):
    """Streams an open object and closes it however the response ends (Starlette does not
    close the iterators it streams when the client goes away)."""

    def __init__(
        self,
        stream: ObjectStream,
        *,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(stream, status_code=status_code, headers=headers, media_type=media_type)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.stream:
            await super().__call__(scope, receive, send)


def attachment_disposition(name: str) -> str:
    """``Content-Disposition`` saving the body as `name`."""
    quoted = urllib.parse.quote(name, safe="")
    if quoted == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename*=utf-8''{quoted}"


def parse_byte_range(header: str | None) -> tuple[int | None, int | None]:
    """A single ``bytes=`` range as (start, end) for `ArtifactStore.open`; anything else
    (none, several, malformed) asks for the whole object, as HTTP allows."""
    if header is None or (match := _RANGE.fullmatch(header.strip())) is None:
        return None, None
    first, last = match.groups()
    if first:
        start, end = int(first), int(last) if last else None
        if end is not None and end < start:
            return None, None
        return start, end
    if last and int(last) > 0:
        return -int(last), None
    return None, None
