"""The artifact stores: every behaviour on the local directory store and on S3 (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from app.errors import InvalidValueError, NotFoundError
from app.settings import Settings
from app.storage import (
    ArtifactStore,
    LocalArtifactStore,
    ObjectStream,
    RangeNotSatisfiableError,
    S3ArtifactStore,
    create_artifact_store,
    join_key,
)
from app.storage.s3 import MIN_PART_SIZE

MIB = 1024 * 1024
REGION = "us-east-1"
S3_PREFIX = "artifacts/test"
MEMORY_BOUND = 64 * MIB

UNSAFE_PATHS = [
    pytest.param("", "is empty", id="empty"),
    pytest.param("..", "'..' segment", id="dot-dot"),
    pytest.param("../escape", "'..' segment", id="dot-dot-first"),
    pytest.param("a/../../escape", "'..' segment", id="dot-dot-inside"),
    pytest.param("./a", "'.' segment", id="dot"),
    pytest.param("/etc/passwd", "absolute", id="absolute"),
    pytest.param("a//b", "empty segment", id="double-slash"),
    pytest.param("a/", "empty segment", id="trailing-slash"),
    pytest.param("a\\b", "backslash", id="backslash"),
    pytest.param("..\\escape", "backslash", id="windows-dot-dot"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("a\nb", "control character U+000A", id="newline"),
    pytest.param("a\x7fb", "control character U+007F", id="delete"),
    pytest.param("x" * 256, "segment longer than 255 bytes", id="long-segment"),
    pytest.param("/".join(["x" * 200] * 6), "longer than 1024 bytes", id="long-key"),
]


# --- fixtures ------------------------------------------------------------------------------


@dataclass
class Backend:
    """One store under test, plus what a test needs to look behind its back."""

    kind: str
    store: ArtifactStore
    make: Callable[..., Awaitable[ArtifactStore]]
    root: Path | None = None
    bucket: str = ""
    admin: Any = None

    def full_key(self, key: str) -> str:
        return f"{S3_PREFIX}/{key}"

    async def leftovers(self) -> list[str]:
        """Anything stored that is not a listed object: temporary files, pending uploads."""
        if self.root is not None:
            listed = {info.key async for info in self.store.list()}
            directories = {parent for key in listed for parent in _ancestors(key)}
            return [path for path in entries_under(self.root) if path not in listed | directories]
        response = await self.admin.list_multipart_uploads(Bucket=self.bucket)
        return [upload["Key"] for upload in response.get("Uploads", [])]


@pytest.fixture(scope="session")
async def s3_admin(s3_endpoint_url: str) -> AsyncIterator[Any]:
    """A plain S3 client for setting up buckets and inspecting what the store left."""
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        yield client


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials the usual AWS way (environment), with no shared config files read."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def _new_bucket(admin: Any) -> str:
    bucket = f"storage-{uuid.uuid4().hex[:16]}"
    await admin.create_bucket(Bucket=bucket)
    # An object outside the store's prefix, which no store operation may see or touch.
    await admin.put_object(Bucket=bucket, Key="outside/keep", Body=b"keep")
    return bucket


@pytest.fixture(params=["local", "s3"])
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_environment: None,
    s3_endpoint_url: str,
    s3_admin: Any,
) -> AsyncIterator[Backend]:
    """A started store, local or S3, tuned so multipart, paging and batching really happen.

    S3: 5 MiB parts (the S3 minimum), 10 keys per listing page and per delete batch, and a
    pool of 2 connections, so a leaked connection blocks the next request.
    """
    stores: list[ArtifactStore] = []
    kind = str(request.param)
    root = tmp_path / "artifacts"
    bucket = await _new_bucket(s3_admin) if kind == "s3" else ""

    async def make(**options: Any) -> ArtifactStore:
        store: ArtifactStore
        if kind == "local":
            store = LocalArtifactStore(root, read_chunk_size=options.get("read_chunk_size", MIB))
        else:
            store = S3ArtifactStore(bucket, S3_PREFIX, endpoint_url=s3_endpoint_url, **options)
        await store.start()
        stores.append(store)
        return store

    store = await make(
        part_size=MIN_PART_SIZE,
        list_page_size=10,
        delete_batch_size=10,
        max_pool_connections=2,
        read_chunk_size=64 * 1024,
    )
    try:
        if kind == "local":
            yield Backend(kind, store, make, root=root)
        else:
            yield Backend(kind, store, make, bucket=bucket, admin=s3_admin)
            outside = await s3_admin.get_object(Bucket=bucket, Key="outside/keep")
            async with outside["Body"] as body:
                assert await body.read() == b"keep"
    finally:
        for opened in stores:
            await opened.close()


# --- helpers -------------------------------------------------------------------------------


class GeneratedBody:
    """`total` pseudo-random bytes in chunks of `chunk_size`, never all in memory at once.

    Each chunk starts with its number, so a reordered or repeated chunk changes the hash.
    `fail_after` raises once that many bytes were produced; `hang_after` waits forever.
    """

    def __init__(
        self,
        total: int,
        *,
        chunk_size: int = MIB,
        fail_after: int | None = None,
        hang_after: int | None = None,
    ) -> None:
        self.total = total
        self.chunk_size = chunk_size
        self.fail_after = fail_after
        self.hang_after = hang_after
        self.sha256 = hashlib.sha256()
        self.hanging = asyncio.Event()
        self._pattern = random.Random(total).randbytes(chunk_size)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        produced = 0
        number = 0
        while produced < self.total:
            if self.fail_after is not None and produced >= self.fail_after:
                raise OSError("the client went away")
            if self.hang_after is not None and produced >= self.hang_after:
                self.hanging.set()
                await asyncio.Event().wait()
            size = min(self.chunk_size, self.total - produced)
            chunk = (number.to_bytes(8, "big") + self._pattern[8:])[:size]
            self.sha256.update(chunk)
            produced += size
            number += 1
            yield chunk


async def body_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read_digest(store: ArtifactStore, key: str) -> tuple[int, str]:
    """The size and sha256 of `key`, streamed."""
    digest = hashlib.sha256()
    size = 0
    async with await store.open(key) as stream:
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def entries_under(root: Path) -> list[str]:
    """Every file and directory below `root`, hidden ones included, as relative paths."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def _ancestors(key: str) -> list[str]:
    parts = key.split("/")
    return ["/".join(parts[:length]) for length in range(1, len(parts))]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_peak_reset() -> bool:
    """Reset the process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise LookupError(field_name)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [[], [b""], [b"hello"], [b"a", b"", b"bc" * 1000, b"\x00\xff"]],
    ids=["no-chunks", "empty-chunk", "one-chunk", "several-chunks"],
)
async def test_small_body_round_trips_with_its_size_and_sha256(
    backend: Backend, chunks: list[bytes]
) -> None:
    store = backend.store
    data = b"".join(chunks)

    stored = await store.put("models/1/model.pkl", body_of(*chunks))

    assert stored.key == "models/1/model.pkl"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    info = await store.stat("models/1/model.pkl")
    assert info is not None and info.size == len(data)
    assert await store.exists("models/1/model.pkl")
    stream = await store.open("models/1/model.pkl")
    assert (stream.size, stream.content_length) == (len(data), len(data))
    assert await stream.read_all() == data


async def test_large_body_is_uploaded_in_several_parts_and_reads_back_intact(
    backend: Backend,
) -> None:
    # 20 MiB in odd-sized chunks, so parts are cut across chunk boundaries.
    body = GeneratedBody(20 * MIB, chunk_size=777_777)

    stored = await backend.store.put("big.bin", body)

    assert stored.size == 20 * MIB
    assert stored.sha256 == body.sha256.hexdigest()
    assert await read_digest(backend.store, "big.bin") == (20 * MIB, stored.sha256)
    if backend.kind == "s3":
        head = await backend.admin.head_object(
            Bucket=backend.bucket, Key=backend.full_key("big.bin")
        )
        # A multipart object's ETag ends in "-<number of parts>": 20 MiB / 5 MiB parts.
        assert head["ETag"].strip('"').endswith("-4")


async def test_put_replaces_the_previous_object(backend: Backend) -> None:
    await backend.store.put("a.txt", body_of(b"first version, longer"))
    stored = await backend.store.put("a.txt", body_of(b"second"))

    assert stored.size == 6
    assert await (await backend.store.open("a.txt")).read_all() == b"second"


async def test_memory_stays_flat_while_streaming_a_large_object(backend: Backend) -> None:
    total = 300 * MIB
    store = await backend.make()
    body = GeneratedBody(total)
    can_reset_rss = rss_peak_reset()
    rss_before = rss_kib("VmRSS")

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        stored = await store.put("huge.bin", body)
        upload_seconds = time.perf_counter() - started
        upload_peak = tracemalloc.get_traced_memory()[1] - baseline

        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        size, sha256 = await read_digest(store, "huge.bin")
        download_seconds = time.perf_counter() - started
        download_peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    rss_peak_growth = rss_kib("VmHWM") - rss_before if can_reset_rss else None

    print(
        f"\n{backend.kind}: {total // MIB} MiB;"
        f" upload {upload_seconds:.1f}s, peak traced {upload_peak / MIB:.1f} MiB;"
        f" download {download_seconds:.1f}s, peak traced {download_peak / MIB:.1f} MiB;"
        f" peak RSS growth {'n/a' if rss_peak_growth is None else rss_peak_growth // 1024} MiB"
    )
    assert (stored.size, stored.sha256) == (total, body.sha256.hexdigest())
    assert (size, sha256) == (total, stored.sha256)
    assert upload_peak < MEMORY_BOUND
    assert download_peak < MEMORY_BOUND
    if rss_peak_growth is not None:
        assert rss_peak_growth * 1024 < 2 * MEMORY_BOUND


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [
        (None, None, 0, 199_999),
        (0, 0, 0, 0),
        (0, 99, 0, 99),
        (70_000, 139_999, 70_000, 139_999),
        (199_990, None, 199_990, 199_999),
        (-10, None, 199_990, 199_999),
        (-500_000, None, 0, 199_999),
        (150_000, 10_000_000, 150_000, 199_999),
    ],
    ids=["whole", "first-byte", "first-100", "middle", "from-offset", "suffix", "long-suffix",
         "end-clamped"],
)  # fmt: skip
async def test_ranged_read_returns_exactly_the_inclusive_range(
    backend: Backend, start: int | None, end: int | None, first: int, last: int
) -> None:
    data = random.Random(7).randbytes(200_000)
    await backend.store.put("ranged.bin", body_of(data))

    async with await backend.store.open("ranged.bin", start=start, end=end) as stream:
        assert (stream.size, stream.start, stream.end) == (200_000, first, last)
        assert stream.content_length == last - first + 1
        assert await stream.read_all() == data[first : last + 1]


async def test_range_outside_the_object_is_not_satisfiable(backend: Backend) -> None:
    await backend.store.put("ten.bin", body_of(b"0123456789"))
    await backend.store.put("empty.bin", body_of())

    for key, start in [("ten.bin", 10), ("ten.bin", 1000), ("empty.bin", 0), ("empty.bin", -5)]:
        with pytest.raises(RangeNotSatisfiableError) as raised:
            await backend.store.open(key, start=start)
        assert raised.value.size == (10 if key == "ten.bin" else 0)
    with pytest.raises(InvalidValueError, match="before its start"):
        await backend.store.open("ten.bin", start=5, end=4)
    with pytest.raises(InvalidValueError, match="takes no end"):
        await backend.store.open("ten.bin", start=-5, end=9)


async def test_missing_object_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFoundError):
        await backend.store.open("nothing/here.bin")
    with pytest.raises(NotFoundError):
        await backend.store.open("nothing/here.bin", start=0, end=10)
    assert await backend.store.stat("nothing/here.bin") is None
    assert not await backend.store.exists("nothing/here.bin")


async def test_a_directory_of_objects_is_not_an_object(backend: Backend) -> None:
    await backend.store.put("dir/file", body_of(b"x"))

    assert await backend.store.stat("dir") is None
    with pytest.raises(NotFoundError):
        await backend.store.open("dir")


async def test_stopping_a_read_early_releases_the_file_or_connection(backend: Backend) -> None:
    store = backend.store
    await store.put("stream.bin", GeneratedBody(4 * MIB))
    descriptors = open_descriptors()

    async def stop_early(round_number: int) -> ObjectStream:
        stream = await store.open("stream.bin")
        if round_number % 3 == 0:
            await anext(stream)
            await stream.aclose()
            with pytest.raises(RuntimeError, match="closed before its end"):
                await anext(stream)
        elif round_number % 3 == 1:
            async with stream:
                async for _ in stream:
                    break
        else:
            # A client that goes away: the task sending the chunks is cancelled.
            async def slow_reader() -> None:
                async with stream:
                    async for _ in stream:
                        await asyncio.sleep(3600)

            reader = asyncio.create_task(slow_reader())
            await asyncio.sleep(0.05)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
        return stream

    # The S3 store's pool holds 2 connections: a leaked one would block the rounds after.
    async with asyncio.timeout(30):
        # Kept referenced, so that garbage collection cannot close what the stream did not.
        streams = [await stop_early(round_number) for round_number in range(12)]
        if backend.kind == "local":
            assert open_descriptors() == descriptors
        check = await store.put("check.bin", GeneratedBody(4 * MIB))
        assert await read_digest(store, "stream.bin") == (4 * MIB, check.sha256)
    assert len(streams) == 12


# --- failures leave nothing behind ---------------------------------------------------------


@pytest.mark.parametrize(
    "fail_after", [0, MIB, 12 * MIB], ids=["at-once", "within-first-part", "after-two-parts"]
)
async def test_failing_body_leaves_nothing_behind(backend: Backend, fail_after: int) -> None:
    store = backend.store
    await store.put("kept.bin", body_of(b"the previous version"))

    for key in ("new.bin", "kept.bin", "deep/new/dir/file.bin"):
        with pytest.raises(OSError, match="went away"):
            await store.put(key, GeneratedBody(20 * MIB, fail_after=fail_after))

    assert not await store.exists("new.bin")
    assert not await store.exists("deep/new/dir/file.bin")
    assert await (await store.open("kept.bin")).read_all() == b"the previous version"
    assert [info.key async for info in store.list()] == ["kept.bin"]
    assert await backend.leftovers() == []


async def test_cancelled_upload_leaves_nothing_behind(backend: Backend) -> None:
    store = backend.store
    body = GeneratedBody(20 * MIB, hang_after=12 * MIB)

    upload = asyncio.create_task(store.put("cancelled.bin", body))
    async with asyncio.timeout(30):
        await body.hanging.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    assert not await store.exists("cancelled.bin")
    assert await backend.leftovers() == []


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "problem"), UNSAFE_PATHS)
def test_join_key_refuses_unsafe_paths(path: str, problem: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        join_key("models/7", path)

    assert problem in raised.value.message
    assert raised.value.field == "path"


@pytest.mark.parametrize(
    "path", ["model.pkl", "dir/sub/file.txt", ".hidden", "with space", "ünïcödé/名前", "a..b"]
)
def test_join_key_accepts_ordinary_paths(path: str) -> None:
    assert join_key("models/7", path) == f"models/7/{path}"
    assert join_key("", path) == path


async def test_stores_refuse_unsafe_keys(backend: Backend) -> None:
    store = backend.store
    operations: dict[str, Callable[[str], Awaitable[object]]] = {
        "put": lambda key: store.put(key, body_of(b"x")),
        "open": lambda key: store.open(key),
        "stat": store.stat,
        "exists": store.exists,
        "delete": store.delete,
        "delete_many": lambda key: store.delete_many(["fine.txt", key]),
    }
    for parameters in UNSAFE_PATHS:
        key, problem = parameters.values
        assert isinstance(key, str) and isinstance(problem, str)
        for name, operation in operations.items():
            with pytest.raises(InvalidValueError) as raised:
                await operation(key)
            assert problem in raised.value.message, (name, key)
        if key:
            with pytest.raises(InvalidValueError):
                async for _ in store.list(key + "/"):
                    pass
    assert [info.key async for info in store.list()] == []
    assert await backend.leftovers() == []


async def test_local_store_cannot_be_escaped_through_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    # A root spelled with "..", as a setting might be: it is normalized, not refused.
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(tmp_path / "elsewhere" / ".." / "artifacts")
    await store.start()
    (root / "models").mkdir()
    (root / "models" / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret")
    (root / "inner-link").symlink_to(root / "models", target_is_directory=True)

    assert store.root == root.resolve()
    for key in ("models/link/secret", "models/link/new", "file-link"):
        with pytest.raises(InvalidValueError, match="outside the artifact store"):
            await store.put(key, body_of(b"overwritten"))
        with pytest.raises(InvalidValueError, match="outside the artifact store"):
            await store.open(key)
        with pytest.raises(InvalidValueError, match="outside the artifact store"):
            await store.stat(key)
        with pytest.raises(InvalidValueError, match="outside the artifact store"):
            await store.delete(key)
    with pytest.raises(InvalidValueError, match="outside the artifact store"):
        async for _ in store.list("models/link/"):
            pass

    # A link that stays inside the root is harmless; links are never listed.
    await store.put("inner-link/through.txt", body_of(b"inside"))
    assert await (await store.open("models/through.txt")).read_all() == b"inside"
    assert [info.key async for info in store.list()] == ["models/through.txt"]
    assert sorted(path.name for path in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


async def test_local_store_refuses_keys_that_collide_with_directories(tmp_path: Path) -> None:
    # S3 allows both "a" and "a/b"; a file system cannot hold both.
    store = LocalArtifactStore(tmp_path)
    await store.put("dir/file", body_of(b"x"))

    with pytest.raises(InvalidValueError, match="directory of other objects"):
        await store.put("dir", body_of(b"y"))
    with pytest.raises(InvalidValueError, match="under an existing object"):
        await store.put("dir/file/below", body_of(b"z"))
    assert entries_under(tmp_path) == ["dir", "dir/file"]


# --- listing and deleting ------------------------------------------------------------------


async def test_list_pages_through_a_prefix_and_delete_many_removes_it_all(
    backend: Backend,
) -> None:
    store = backend.store
    batch = [f"batch/{number:02d}.bin" for number in range(22)]
    batch += ["batch/a.txt", "batch/a/b", "batch/a-b"]  # key order is not directory order
    for key in batch:
        await store.put(key, body_of(key.encode()))
    await store.put("batchelor", body_of(b"not in the directory"))
    await store.put("other/file", body_of(b"untouched"))
    list_calls = 0
    delete_calls = 0
    if backend.kind == "s3":

        def count(event_name: str, **_: object) -> None:
            nonlocal list_calls, delete_calls
            list_calls += "ListObjectsV2" in event_name
            delete_calls += "DeleteObjects" in event_name

        events = store._client.meta.events  # type: ignore[attr-defined]
        events.register("before-call.s3.ListObjectsV2", count)
        events.register("before-call.s3.DeleteObjects", count)

    listed = [info async for info in store.list("batch/")]

    assert [info.key for info in listed] == sorted(batch)
    assert all(info.size == len(info.key.encode()) for info in listed)
    assert [info.key async for info in store.list("batch")] == [*sorted(batch), "batchelor"]
    assert [info.key async for info in store.list("batch/a")] == [
        "batch/a-b",
        "batch/a.txt",
        "batch/a/b",
    ]
    assert [info.key async for info in store.list("nothing/")] == []

    await store.delete_many([*batch, "batch/never-existed"])

    assert [info.key async for info in store.list("batch/")] == []
    assert [info.key async for info in store.list()] == ["batchelor", "other/file"]
    if backend.kind == "s3":
        # Pages of 10: 25 keys in 3 calls, 26 in 3, then four listings of one page each.
        assert list_calls == 3 + 3 + 4
        assert delete_calls == 3  # 26 keys in batches of 10
    else:
        assert sorted(path.name for path in backend.root.iterdir()) == [  # type: ignore[union-attr]
            "batchelor",
            "other",
        ]


async def test_delete_removes_one_object_and_ignores_a_missing_one(backend: Backend) -> None:
    await backend.store.put("models/1/a", body_of(b"a"))
    await backend.store.put("models/1/b", body_of(b"b"))

    await backend.store.delete("models/1/a")
    await backend.store.delete("models/1/a")
    await backend.store.delete_many([])

    assert [info.key async for info in backend.store.list()] == ["models/1/b"]


# --- configuration -------------------------------------------------------------------------


async def test_settings_select_the_store(
    tmp_path: Path, aws_environment: None, s3_endpoint_url: str, s3_admin: Any
) -> None:
    local = create_artifact_store(Settings(artifacts=str(tmp_path / "files")))
    assert isinstance(local, LocalArtifactStore)
    assert local.root == (tmp_path / "files").resolve()

    bucket = await _new_bucket(s3_admin)
    settings = Settings(
        artifacts=f"s3://{bucket}/registry/",
        s3_endpoint_url=s3_endpoint_url,
        s3_region=REGION,
    )
    store = create_artifact_store(settings)
    assert isinstance(store, S3ArtifactStore)
    async with store:
        await store.put("x/y.txt", body_of(b"through the settings"))
    head = await s3_admin.head_object(Bucket=bucket, Key="registry/x/y.txt")
    assert head["ContentLength"] == len(b"through the settings")
    with pytest.raises(RuntimeError, match="before start"):
        await store.stat("x/y.txt")
