"""Artifacts in an S3 bucket (AWS or any S3-compatible server such as MinIO), via aiobotocore.

One client lives from `start` to `close`; credentials, region and botocore options come the
usual AWS way (environment variables, shared config files, instance roles) unless given
explicitly. An S3-compatible server that does not support the CRC32 checksums botocore sends
by default can be served with ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``.
Bodies up to one part go up in a single PutObject; larger ones as a multipart upload, one
part in memory at a time, aborted on any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as EndpointConnectionFailure

from app.errors import InvalidValueError, NotFoundError
from app.storage.base import (
    PROBE_TIMEOUT_SECONDS,
    READ_CHUNK_SIZE,
    ArtifactStoreError,
    ArtifactStoreUnavailableError,
    ObjectInfo,
    ObjectStream,
    RangeNotSatisfiableError,
    StoredObject,
    check_range,
    complete_or_undo,
    resolve_range,
)
from app.storage.keys import validate_key, validate_prefix

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
"""S3 refuses smaller parts (except the last one)."""
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
MAX_DELETE_BATCH = 1000
"""The most keys one DeleteObjects request may name."""

_PART_CHECKSUM_ALGORITHM = "CRC32"
_PART_CHECKSUM_MEMBER = "ChecksumCRC32"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _error_code(error: Exception) -> str:
    response: dict[str, Any] = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


class _S3ObjectStream(ObjectStream):
    def __init__(
        self, *, key: str, body: Any, size: int, start: int, end: int, chunk_size: int
    ) -> None:
        super().__init__(key=key, size=size, start=start, end=end)
        self._body = body
        self._chunk_size = chunk_size

    async def _read_chunk(self) -> bytes:
        # read() also checks, at the end, that the whole Content-Length arrived.
        chunk: bytes = await self._body.read(self._chunk_size)
        return chunk

    async def _release(self) -> None:
        # Closing an unfinished response drops its connection instead of draining it.
        self._body.close()


class S3ArtifactStore:
    """Objects under ``s3://bucket/prefix/``; the key is the part after the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_pool_connections: int = 10,
        list_page_size: int = 1000,
        delete_batch_size: int = MAX_DELETE_BATCH,
        read_chunk_size: int = READ_CHUNK_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if not 1 <= delete_batch_size <= MAX_DELETE_BATCH:
            raise ValueError(f"delete_batch_size must be between 1 and {MAX_DELETE_BATCH}")
        self.bucket = bucket
        self.prefix = validate_prefix(prefix.strip("/"))
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._part_size = part_size
        self._max_pool_connections = max_pool_connections
        self._list_page_size = list_page_size
        self._delete_batch_size = delete_batch_size
        self._read_chunk_size = read_chunk_size
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client_instance: Any = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Create the client (and its connection pool); a no-op when already started."""
        if self._exit_stack is not None:
            return
        config = AioConfig(
            # S3-compatible servers are addressed by path: no per-bucket DNS names.
            s3={"addressing_style": "path"} if self._endpoint_url else None,
            retries={"mode": "standard"},
            max_pool_connections=self._max_pool_connections,
        )
        stack = contextlib.AsyncExitStack()
        self._client_instance = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                region_name=self._region,
                endpoint_url=self._endpoint_url,
                aws_access_key_id=self._access_key_id,
                aws_secret_access_key=self._secret_access_key,
                config=config,
            )
        )
        self._exit_stack = stack

    async def close(self) -> None:
        stack, self._exit_stack, self._client_instance = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()

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

    async def probe(self) -> None:
        """HeadBucket: proves the endpoint answers, the credentials are accepted and the
        bucket exists (not that they allow writing)."""
        client = self._client
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await client.head_bucket(Bucket=self.bucket)
        except TimeoutError:
            raise ArtifactStoreUnavailableError(
                f"the S3 endpoint {client.meta.endpoint_url} did not answer within "
                f"{PROBE_TIMEOUT_SECONDS:.0f} s",
                transient=True,
            ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise ArtifactStoreUnavailableError(
                "no S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                " (or another AWS credential source)",
                transient=False,
            ) from None
        except client.exceptions.ClientError as error:
            raise self._refusal(error) from None
        except (BotoCoreError, OSError) as error:
            raise ArtifactStoreUnavailableError(
                f"cannot reach the S3 endpoint {client.meta.endpoint_url}: {error}",
                # Failing to connect may pass; other client-side failures are settings.
                transient=isinstance(error, (EndpointConnectionFailure, HTTPClientError, OSError)),
            ) from None

    def _refusal(self, error: Exception) -> ArtifactStoreUnavailableError:
        """What an S3 error answer to HeadBucket means (HEAD answers carry no message)."""
        code = _error_code(error)
        response: dict[str, Any] = getattr(error, "response", {})
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in {"404", "NoSuchBucket", "NotFound"}:
            return ArtifactStoreUnavailableError(
                f"the bucket '{self.bucket}' does not exist", transient=False
            )
        if code in {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId"} or status == 403:
            return ArtifactStoreUnavailableError(
                f"the S3 server refused access to the bucket '{self.bucket}' (403):"
                " check the S3 credentials and their permissions",
                transient=False,
            )
        return ArtifactStoreUnavailableError(
            f"the S3 server answered HeadBucket '{self.bucket}' with {code or status}",
            transient=status >= 500,
        )

    @property
    def _client(self) -> Any:
        if self._client_instance is None:
            raise RuntimeError("S3ArtifactStore used before start() or after close()")
        return self._client_instance

    def _full_key(self, key: str) -> str:
        validate_key(key)
        full_key = f"{self.prefix}/{key}" if self.prefix else key
        return validate_key(full_key)

    def _key_of(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    # --- writing -----------------------------------------------------------------------

    def _part_size_for(self, size_hint: int | None) -> int:
        if size_hint is None:
            return self._part_size
        return max(self._part_size, math.ceil(size_hint / MAX_PARTS))

    async def put(
        self, key: str, body: AsyncIterable[bytes], *, size_hint: int | None = None
    ) -> StoredObject:
        full_key = self._full_key(key)
        client = self._client
        part_size = self._part_size_for(size_hint)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def abort(upload: str) -> None:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload)

        async def create_upload() -> str:
            response = await client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **self._checksum_arguments()
            )
            return str(response["UploadId"])

        try:
            async for chunk in body:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= part_size:
                    if upload_id is None:
                        upload_id = await complete_or_undo(create_upload(), abort)
                    if len(parts) == MAX_PARTS:
                        raise InvalidValueError(
                            f"artifact {key!r} exceeds {MAX_PARTS} parts of {part_size} bytes;"
                            " pass its size as size_hint",
                            field="size",
                        )
                    with memoryview(buffer) as view:
                        part = bytes(view[:part_size])
                    del buffer[:part_size]
                    parts.append(await self._upload_part(full_key, upload_id, len(parts) + 1, part))
                    del part
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=full_key, Body=bytes(buffer))
            else:
                if buffer:
                    last = bytes(buffer)
                    buffer.clear()
                    parts.append(await self._upload_part(full_key, upload_id, len(parts) + 1, last))
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                # Shielded: a second cancellation must not leave the upload's parts behind.
                try:
                    await asyncio.shield(abort(upload_id))
                except Exception:
                    logger.warning(
                        "could not abort the multipart upload %s of s3://%s/%s",
                        upload_id,
                        self.bucket,
                        full_key,
                        exc_info=True,
                    )
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def _checksum_arguments(self) -> dict[str, str]:
        """Multipart checksum settings, as boto3's transfer manager chooses them.

        With botocore's default (``when_supported``) each part carries a CRC32, which S3
        accepts only if the upload was created for it and the completion lists every part's.
        """
        if self._client.meta.config.request_checksum_calculation == "when_supported":
            return {"ChecksumAlgorithm": _PART_CHECKSUM_ALGORITHM}
        return {}

    async def _upload_part(
        self, full_key: str, upload_id: str, number: int, data: bytes
    ) -> dict[str, Any]:
        checksum_arguments = self._checksum_arguments()
        response = await self._client.upload_part(
            Bucket=self.bucket,
            Key=full_key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            **checksum_arguments,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if checksum_arguments and (checksum := response.get(_PART_CHECKSUM_MEMBER)):
            part[_PART_CHECKSUM_MEMBER] = checksum
        return part

    # --- reading -----------------------------------------------------------------------

    async def open(
        self, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        full_key = self._full_key(key)
        check_range(start, end)
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key}
        if start is not None and start < 0:
            request["Range"] = f"bytes={start}"
        elif start is not None or end is not None:
            request["Range"] = f"bytes={start or 0}-{'' if end is None else end}"
        client = self._client
        try:
            response = await client.get_object(**request)
        except client.exceptions.ClientError as error:
            code = _error_code(error)
            if code in {"NoSuchKey", "404"}:
                raise NotFoundError(f"no artifact {key!r}", field="key") from None
            if code == "InvalidRange":
                info = await self.stat(key)
                if info is None:
                    raise NotFoundError(f"no artifact {key!r}", field="key") from None
                raise RangeNotSatisfiableError(
                    f"range {request['Range']!r} lies outside {info.size} bytes", size=info.size
                ) from None
            raise
        body = response["Body"]
        try:
            first, last, size = self._range_sent(key, response, start, end)
        except BaseException:
            body.close()
            raise
        return _S3ObjectStream(
            key=key, body=body, size=size, start=first, end=last, chunk_size=self._read_chunk_size
        )

    @staticmethod
    def _range_sent(
        key: str, response: dict[str, Any], start: int | None, end: int | None
    ) -> tuple[int, int, int]:
        """The (first, last, object size) of a GetObject response's body."""
        length = int(response["ContentLength"])
        if match := _CONTENT_RANGE.fullmatch(response.get("ContentRange") or ""):
            first, last, size = (int(group) for group in match.groups())
        else:
            # A whole-object answer (200): fine when the range asked for all of it.
            size = length
            first, last = resolve_range(size, start, end)
            if (first, last) != (0, size - 1):
                raise ArtifactStoreError(f"the S3 server ignored the range asked of {key!r}")
        if last - first + 1 != length:
            raise ArtifactStoreError(f"the S3 server sent an inconsistent range of {key!r}")
        return first, last, size

    async def stat(self, key: str) -> ObjectInfo | None:
        full_key = self._full_key(key)
        client = self._client
        try:
            response = await client.head_object(Bucket=self.bucket, Key=full_key)
        except client.exceptions.ClientError as error:
            if _error_code(error) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return ObjectInfo(key=key, size=int(response["ContentLength"]))

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    # --- deleting ----------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=self._full_key(key))

    async def delete_many(self, keys: Iterable[str]) -> None:
        full_keys = [self._full_key(key) for key in keys]
        for offset in range(0, len(full_keys), self._delete_batch_size):
            batch = full_keys[offset : offset + self._delete_batch_size]
            response = await self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if errors := response.get("Errors"):
                first = errors[0]
                raise ArtifactStoreError(
                    f"S3 refused to delete {len(errors)} object(s), first {first.get('Key')!r}:"
                    f" {first.get('Code')} {first.get('Message')}"
                )

    # --- listing -----------------------------------------------------------------------

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=full_prefix,
            PaginationConfig={"PageSize": self._list_page_size},
        )
        async for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(key=self._key_of(item["Key"]), size=int(item["Size"]))
