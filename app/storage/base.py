"""The ArtifactStore protocol: where artifact bytes live, streamed in both directions.

Byte ranges follow HTTP ``Range`` semantics: `start` and `end` are offsets of the first and
the last byte (both inclusive), an `end` past the object is clamped to its last byte, and a
negative `start` asks for the last ``-start`` bytes (``bytes=-N``). A range that starts at
or after the end of the object raises RangeNotSatisfiableError.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from app.errors import InvalidValueError

READ_CHUNK_SIZE = 1024 * 1024

_T = TypeVar("_T")


@dataclass(frozen=True)
class StoredObject:
    """What `put` wrote: the key, its size in bytes and the hex sha256 of its content."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class RangeNotSatisfiableError(InvalidValueError):
    """The requested byte range lies outside the object (HTTP 416); `size` is its length."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, field="range")
        self.size = size


class ArtifactStoreError(Exception):
    """The backend failed in a way the caller cannot fix (for example a refused delete)."""


# A store that has not answered a probe within this long counts as unreachable.
PROBE_TIMEOUT_SECONDS = 5.0


class ArtifactStoreUnavailableError(ArtifactStoreError):
    """`probe` found the store unusable; the message says why, without naming settings.

    `transient` is True when the store did not answer (retrying later may succeed), False
    when it answered with a refusal (missing bucket or credentials, unwritable directory:
    a setting or a permission must change).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def check_range(start: int | None, end: int | None) -> None:
    """Refuse range arguments that make no sense whatever the object's size."""
    if start is not None and start < 0:
        if end is not None:
            raise InvalidValueError("a suffix range (negative start) takes no end", field="range")
        return
    if end is not None and end < (start or 0):
        raise InvalidValueError(f"range end {end} is before its start {start or 0}", field="range")


def resolve_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """The inclusive (first, last) byte offsets that `start`/`end` select in `size` bytes.

    Without a range, an empty object gives (0, -1): zero bytes.
    """
    check_range(start, end)
    if start is None and end is None:
        return 0, size - 1
    if start is not None and start < 0:
        if size == 0:
            raise RangeNotSatisfiableError("the object is empty", size=size)
        return max(size + start, 0), size - 1
    first = start or 0
    if first >= size:
        raise RangeNotSatisfiableError(f"range starts at {first}, past {size} bytes", size=size)
    return first, size - 1 if end is None else min(end, size - 1)


_undoing: set[asyncio.Task[None]] = set()


async def complete_or_undo(
    operation: Coroutine[Any, Any, _T], undo: Callable[[_T], Awaitable[None]]
) -> _T:
    """Await `operation`; if the caller is cancelled meanwhile, let it finish, then undo it.

    For steps that create something (a temporary file, a multipart upload) which the caller
    could not clean up if its cancellation arrived before it learnt what was created.
    """
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        async def undo_when_done() -> None:
            with contextlib.suppress(Exception):
                await undo(await task)

        undoing = asyncio.ensure_future(undo_when_done())
        _undoing.add(undoing)
        undoing.add_done_callback(_undoing.discard)
        raise


class ObjectStream(ABC):
    """An open object (or byte range of one), read once, chunk by chunk, by ``async for``.

    `size` is the whole object's length; `start` and `end` are the inclusive offsets being
    read, so `content_length` is ``end - start + 1``. The underlying file or HTTP response is
    released when the last chunk has been read, when a read fails or is cancelled, and by
    `aclose`. A reader that may stop early (a client that disconnects) must use
    ``async with stream:`` or call `aclose`; otherwise only garbage collection releases it.
    """

    def __init__(self, *, key: str, size: int, start: int, end: int) -> None:
        self.key = key
        self.size = size
        self.start = start
        self.end = end
        self._exhausted = False
        self._closed = False

    @property
    def content_length(self) -> int:
        return self.end - self.start + 1

    @abstractmethod
    async def _read_chunk(self) -> bytes:
        """The next chunk of the range; b"" once it is exhausted."""

    @abstractmethod
    async def _release(self) -> None:
        """Close the underlying file or response; called once."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._exhausted:
            raise StopAsyncIteration
        if self._closed:
            raise RuntimeError(f"the stream of {self.key!r} was closed before its end")
        try:
            chunk = await self._read_chunk()
        except BaseException:
            await self.aclose()
            raise
        if not chunk:
            self._exhausted = True
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks as an async generator that closes the stream when it is closed."""
        async with self:
            async for chunk in self:
                yield chunk

    async def read_all(self) -> bytes:
        """The whole range in memory: for small objects only."""
        async with self:
            return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class ArtifactStore(Protocol):
    """Artifact bytes by key. Keys are validated by `app.storage.keys.validate_key`.

    Call `start` before use and `close` at shutdown (or use ``async with``).
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def probe(self) -> None:
        """Check, cheaply, that the store can be used now: the directory exists and is
        writable, or the bucket exists and the credentials are accepted.

        Raises ArtifactStoreUnavailableError saying why not, within PROBE_TIMEOUT_SECONDS.
        Start-up and every readiness probe call it.
        """
        ...

    async def put(
        self, key: str, body: AsyncIterable[bytes], *, size_hint: int | None = None
    ) -> StoredObject:
        """Store `body` under `key`, replacing any object there, and return its size and sha256.

        The object appears whole or not at all: if `body` raises (or the task is cancelled),
        nothing is left behind and an object previously stored under `key` is untouched.
        `size_hint`, when known, lets the store pick a part size for very large bodies.
        """
        ...

    async def open(
        self, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        """Open `key` for streaming, optionally a byte range of it (see the module docs).

        Raises NotFoundError when there is no such object.
        """
        ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Delete `key`; deleting a missing object is not an error."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key in `keys` (in batches); missing objects are not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a plain string prefix), in key order."""
        ...
