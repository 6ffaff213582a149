"""Artifacts in a local directory: the embedded default.

Blocking file operations run in worker threads (`asyncio.to_thread`). A put writes to a
temporary file next to its destination, fsyncs it and renames it into place, so readers see
the old object or the new one, never a partial one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from app.errors import InvalidValueError, NotFoundError
from app.storage.base import (
    PROBE_TIMEOUT_SECONDS,
    READ_CHUNK_SIZE,
    ArtifactStoreUnavailableError,
    ObjectInfo,
    ObjectStream,
    StoredObject,
    check_range,
    complete_or_undo,
    resolve_range,
)
from app.storage.keys import validate_key, validate_prefix

WRITE_CHUNK_SIZE = 1024 * 1024
LIST_BATCH_SIZE = 1000

_TEMPORARY_PREFIX = ".modelreg-upload-"
_TEMPORARY_NAME = re.compile(re.escape(_TEMPORARY_PREFIX) + r"[0-9a-f]{32}\.partial")


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _LocalObjectStream(ObjectStream):
    def __init__(
        self, *, key: str, file: BinaryIO, size: int, start: int, end: int, chunk_size: int
    ) -> None:
        super().__init__(key=key, size=size, start=start, end=end)
        self._file = file
        self._remaining = end - start + 1
        self._chunk_size = chunk_size

    async def _read_chunk(self) -> bytes:
        if self._remaining <= 0:
            return b""
        chunk = await asyncio.to_thread(self._file.read, min(self._chunk_size, self._remaining))
        self._remaining -= len(chunk)
        return chunk

    async def _release(self) -> None:
        # Closing a read-only file is immediate, and doing it inline survives a cancellation.
        self._file.close()


class LocalArtifactStore:
    """Objects as files under `root`; the key is the path relative to it."""

    def __init__(self, root: Path, *, read_chunk_size: int = READ_CHUNK_SIZE) -> None:
        self.root = Path(os.path.realpath(root))
        self._read_chunk_size = read_chunk_size

    async def start(self) -> None:
        """Create the root directory; ArtifactStoreUnavailableError when it cannot be."""
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactStoreUnavailableError(
                f"cannot create the artifact directory {self.root}: {error.strerror}",
                transient=False,
            ) from None

    async def probe(self) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await asyncio.to_thread(self._probe)
        except TimeoutError:
            raise ArtifactStoreUnavailableError(
                f"the artifact directory {self.root} did not answer within "
                f"{PROBE_TIMEOUT_SECONDS:.0f} s",
                transient=True,
            ) from None

    def _probe(self) -> None:
        if not self.root.is_dir():
            raise ArtifactStoreUnavailableError(
                f"the artifact directory {self.root} does not exist", transient=False
            )
        try:
            # An unnamed file: nothing is left behind, whatever happens next.
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise ArtifactStoreUnavailableError(
                f"the artifact directory {self.root} is not writable: {error.strerror}",
                transient=False,
            ) from None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _path(self, key: str) -> Path:
        """The file of `key`, refusing keys that resolve outside the root (e.g. via symlinks).

        It reads the file system: call it in a worker thread.
        """
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        if not Path(os.path.realpath(path)).is_relative_to(self.root):
            raise InvalidValueError(f"key {key!r} leads outside the artifact store", field="key")
        return path

    # --- writing -----------------------------------------------------------------------

    async def put(
        self, key: str, body: AsyncIterable[bytes], *, size_hint: int | None = None
    ) -> StoredObject:
        validate_key(key)

        async def discard(created: tuple[BinaryIO, Path, Path]) -> None:
            self._discard(*created)

        file, temporary, path = await complete_or_undo(
            asyncio.to_thread(self._create_temporary, key), discard
        )
        digest = hashlib.sha256()
        size = 0

        def write(data: bytes | bytearray) -> None:
            file.write(data)
            digest.update(data)

        try:
            pending = bytearray()
            async for chunk in body:
                size += len(chunk)
                if not pending and len(chunk) >= WRITE_CHUNK_SIZE:
                    await asyncio.to_thread(write, chunk)
                    continue
                # Small chunks are gathered so each thread hop writes about a megabyte.
                pending += chunk
                if len(pending) >= WRITE_CHUNK_SIZE:
                    await asyncio.to_thread(write, pending)
                    pending.clear()
            if pending:
                await asyncio.to_thread(write, pending)
            await asyncio.to_thread(self._commit, key, file, temporary, path)
        except BaseException:
            # Inline, so that a second cancellation cannot skip the clean-up.
            self._discard(file, temporary, path)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def _create_temporary(self, key: str) -> tuple[BinaryIO, Path, Path]:
        """An open temporary file next to the file of `key`, and both their paths."""
        path = self._path(key)
        # Another task's delete may prune the fresh directory between mkdir and open: retry.
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.parent / f"{_TEMPORARY_PREFIX}{secrets.token_hex(16)}.partial"
                return temporary.open("xb"), temporary, path
            except (FileExistsError, NotADirectoryError) as error:
                raise InvalidValueError(
                    f"key {key!r} lies under an existing object", field="key"
                ) from error
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _discard(self, file: BinaryIO, temporary: Path, path: Path) -> None:
        """Remove an unfinished upload, and the directories created only for it."""
        file.close()
        temporary.unlink(missing_ok=True)
        self._prune_empty_directories(path.parent)

    def _commit(self, key: str, file: BinaryIO, temporary: Path, path: Path) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        try:
            os.replace(temporary, path)
        except IsADirectoryError as error:
            raise InvalidValueError(
                f"key {key!r} names a directory of other objects", field="key"
            ) from error
        _fsync_directory(path.parent)

    # --- reading -----------------------------------------------------------------------

    async def open(
        self, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        validate_key(key)
        check_range(start, end)
        file, size = await asyncio.to_thread(self._open_regular_file, key)
        try:
            first, last = resolve_range(size, start, end)
            if first:
                await asyncio.to_thread(file.seek, first)
        except BaseException:
            file.close()
            raise
        return _LocalObjectStream(
            key=key, file=file, size=size, start=first, end=last, chunk_size=self._read_chunk_size
        )

    def _open_regular_file(self, key: str) -> tuple[BinaryIO, int]:
        try:
            file = self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"no artifact {key!r}", field="key") from None
        size = os.fstat(file.fileno())
        if not stat.S_ISREG(size.st_mode):
            file.close()
            raise NotFoundError(f"no artifact {key!r}", field="key")
        return file, size.st_size

    async def stat(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            result = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(result.st_mode):
            return None
        return ObjectInfo(key=key, size=result.st_size)

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    # --- deleting ----------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        await self.delete_many([key])

    async def delete_many(self, keys: Iterable[str]) -> None:
        keys = [validate_key(key) for key in keys]
        await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: Iterable[str]) -> None:
        # Every key is checked before the first file goes.
        paths = [self._path(key) for key in keys]
        for path in paths:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            self._prune_empty_directories(path.parent)

    def _prune_empty_directories(self, directory: Path) -> None:
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # --- listing -----------------------------------------------------------------------

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        directory_key = prefix.rpartition("/")[0]
        directory = self.root
        if directory_key:
            directory = await asyncio.to_thread(self._path, directory_key)
        entries = self._walk(directory, directory_key, prefix)
        while batch := await asyncio.to_thread(_take, entries, LIST_BATCH_SIZE):
            for info in batch:
                yield info

    def _walk(self, directory: Path, directory_key: str, prefix: str) -> Iterator[ObjectInfo]:
        """Regular files under `directory` whose key starts with `prefix`, in key order.

        Sorting each directory by name, with "/" appended to subdirectory names, yields keys
        in the same order as S3 lists them. Symbolic links are not followed.
        """
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        named = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                named.append((entry.name + "/", entry))
            elif entry.is_file(follow_symlinks=False) and not _TEMPORARY_NAME.fullmatch(entry.name):
                named.append((entry.name, entry))
        for name, entry in sorted(named, key=lambda item: item[0]):
            key = f"{directory_key}/{name}" if directory_key else name
            if name.endswith("/"):
                # Descend when the prefix selects keys below this directory, or all of it.
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key.removesuffix("/"), prefix)
            elif key.startswith(prefix):
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                yield ObjectInfo(key=key, size=size)


def _take(entries: Iterator[ObjectInfo], count: int) -> list[ObjectInfo]:
    return [entry for _, entry in zip(range(count), entries, strict=False)]
