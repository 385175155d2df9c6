"""The bucket: where it is, whose credentials, and the S3 calls Doorward makes on it.

:class:`ObjectStore` wraps one `aiobotocore` client (asyncio on aiohttp, SigV4, the S3 checksum
headers and presigned URLs, maintained with botocore itself). Every PUT carries the object's
SHA-256 (``x-amz-checksum-sha256``): a store that received other bytes refuses the PUT
(``BadDigest``), and a PUT is atomic in S3, so an object is either absent or whole under its final
key. The client never retries on its own; the callers (the device's upload queue, the owner's
restore) decide.

Errors are sorted into what a caller can act on (:class:`StoreUnreachable`, :class:`StoreDenied`,
:class:`ClockSkewed`, :class:`StoreFull`, :class:`ObjectMissing`, :class:`ChecksumMismatch`);
their messages name the bucket and the object key, never a credential.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiobotocore.session
import aiohttp
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hub.offsite.target import (
    BucketAddress,
    ChecksumMismatch,
    ClockSkewed,
    Credentials,
    ObjectMissing,
    OffsiteError,
    StoreDenied,
    StoreFull,
    StoreUnreachable,
)

__all__ = [
    "MULTIPART_PART_SIZE",
    "BucketAddress",
    "ChecksumMismatch",
    "ClockSkewed",
    "Credentials",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "OffsiteError",
    "StoreDenied",
    "StoreFull",
    "StoreUnreachable",
]

# Objects larger than this go up in parts of this size (S3 allows 5 MiB to 5 GiB per part).
MULTIPART_PART_SIZE = 16 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object as a listing shows it: its name under the prefix and its size."""

    name: str
    size: int


def sha256_b64(digest: bytes) -> str:
    """The ``x-amz-checksum-sha256`` form of a SHA-256 digest."""
    return base64.b64encode(digest).decode("ascii")


class ObjectStore:
    """One S3 client on one bucket and prefix; use as ``async with ObjectStore(...) as store``."""

    def __init__(
        self,
        address: BucketAddress,
        credentials: Credentials,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        """Calls time out after ``connect_timeout_s`` to connect and ``read_timeout_s`` between
        reads; nothing is retried here."""
        self.address = address
        self._credentials = credentials
        self._config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def __repr__(self) -> str:
        return f"ObjectStore({self.address})"

    async def __aenter__(self) -> ObjectStore:
        session = aiobotocore.session.get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=self.address.endpoint,
                region_name=self.address.region,
                aws_access_key_id=self._credentials.access_key_id,
                aws_secret_access_key=self._credentials.secret_access_key,
                config=self._config,
            )
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._client = None

    # -- writing -----------------------------------------------------------------------------

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (an administrator's call, not the device's)."""
        try:
            async with self._errors("(bucket)"):
                await self._client.create_bucket(Bucket=self.address.bucket)
        except OffsiteError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                raise

    async def put_bytes(self, name: str, data: bytes, *, sha256: bytes | None = None) -> None:
        """Store ``data`` under ``name`` with its SHA-256 (computed here unless given: give it
        for large objects, hashed off the event loop) checked by the store."""
        digest = hashlib.sha256(data).digest() if sha256 is None else sha256
        async with self._errors(name):
            await self._client.put_object(
                Bucket=self.address.bucket,
                Key=self.address.key(name),
                Body=data,
                ChecksumSHA256=sha256_b64(digest),
            )

    async def put_file(self, name: str, path: Path, *, sha256: bytes | None = None) -> int:
        """Store the file at ``path`` under ``name``; returns its size. ``sha256`` is the file's
        digest when the caller knows it; it is computed otherwise, and either way the store checks
        it. Files past :data:`MULTIPART_PART_SIZE` go up in parts, each checked, and appear only
        when the upload completes."""
        size = await asyncio.to_thread(_file_size, path)
        if size > MULTIPART_PART_SIZE:
            await self._put_multipart(name, path)
            return size
        data, digest = await asyncio.to_thread(_read_and_hash, Path(path))
        if sha256 is not None and digest != sha256:
            raise ChecksumMismatch(
                f"{path.name} changed on disk: its SHA-256 is not the one queued for {name}"
            )
        await self.put_bytes(name, data, sha256=digest)
        return len(data)

    async def _put_multipart(self, name: str, path: Path) -> None:
        key = self.address.key(name)
        async with self._errors(name):
            started = await self._client.create_multipart_upload(
                Bucket=self.address.bucket, Key=key, ChecksumAlgorithm="SHA256"
            )
        upload_id = started["UploadId"]
        parts = []
        try:
            with open(path, "rb") as f:  # noqa: ASYNC230 - one bounded read per part
                number = 1
                while chunk := f.read(MULTIPART_PART_SIZE):
                    checksum = sha256_b64(hashlib.sha256(chunk).digest())
                    async with self._errors(name):
                        answer = await self._client.upload_part(
                            Bucket=self.address.bucket,
                            Key=key,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=chunk,
                            ChecksumSHA256=checksum,
                        )
                    parts.append(
                        {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
                    )
                    number += 1
            async with self._errors(name):
                await self._client.complete_multipart_upload(
                    Bucket=self.address.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError, aiohttp.ClientError, OSError):
                await self._client.abort_multipart_upload(
                    Bucket=self.address.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def delete(self, name: str) -> None:
        """Delete ``name``; deleting an object that is not there is not an error (S3's rule)."""
        async with self._errors(name):
            await self._client.delete_object(Bucket=self.address.bucket, Key=self.address.key(name))

    # -- reading -----------------------------------------------------------------------------

    async def list(self, under: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``under``, in key order."""
        prefix = self.address.key(under)
        found: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.address.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            async with self._errors(under or "(listing)"):
                page = await self._client.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                found.append(
                    ObjectInfo(item["Key"][len(self.address.prefix) + 1 :], int(item["Size"]))
                )
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    async def get_bytes(self, name: str, *, max_size: int) -> bytes:
        """The whole object, refused if larger than ``max_size`` bytes."""
        chunks = []
        total = 0
        async for chunk in self.stream(name):
            total += len(chunk)
            if total > max_size:
                raise StoreFull(f"{name} is larger than the {max_size} bytes expected of it")
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_file(self, name: str, out: IO[bytes]) -> tuple[int, bytes]:
        """Write the object to ``out``; returns its size and SHA-256."""
        digest = hashlib.sha256()
        size = 0
        async for chunk in self.stream(name):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        return size, digest.digest()

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes, a chunk at a time."""
        async with self._errors(name):
            answer = await self._client.get_object(
                Bucket=self.address.bucket, Key=self.address.key(name)
            )
            async with answer["Body"] as body:
                while chunk := await body.read(_READ_CHUNK):
                    yield chunk

    async def presign_get(self, name: str, expires_s: int) -> str:
        """A URL that GETs ``name`` without credentials for ``expires_s`` seconds."""
        if not 1 <= expires_s <= 7 * 86400:
            raise OffsiteError(f"a presigned URL lasts 1 s to 7 days, not {expires_s} s")
        return str(
            await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.address.bucket, "Key": self.address.key(name)},
                ExpiresIn=expires_s,
            )
        )

    # -- errors ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _errors(self, name: str) -> AsyncIterator[None]:
        try:
            yield
        except ClientError as exc:
            raise _sorted_error(exc, self.address, name) from None
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise StoreUnreachable(
                f"{self.address.endpoint} did not answer for {name} ({type(exc).__name__}); "
                "the store is down or unreachable, retrying later"
            ) from None


_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
}
_SKEWED = {"RequestTimeTooSkewed", "RequestExpired"}
_FULL = {
    "QuotaExceeded",
    "EntityTooLarge",
    "InsufficientStorage",
    "StorageFull",
    "XMinioStorageFull",
}
_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}


def _sorted_error(exc: ClientError, address: BucketAddress, name: str) -> OffsiteError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f"{name} in s3://{address.bucket}/{address.prefix}"
    if code in _SKEWED:
        return ClockSkewed(
            f"the store refused the request's time ({code}) for {where}: S3 signatures need the "
            "device clock within 15 minutes of true time; set up NTP and check `date -u`"
        )
    if code in _DENIED or status == 403:
        return StoreDenied(
            f"the store refused the credentials for {where} ({code or status}); check the access "
            "key and that its policy allows this operation under the prefix"
        )
    if code in _FULL or status in (413, 507):
        return StoreFull(f"the store refused {where} for lack of space or quota ({code or status})")
    if code in _MISSING or status == 404:
        return ObjectMissing(f"{where} does not exist ({code or status})")
    if code in _CHECKSUM:
        return ChecksumMismatch(f"the store received other bytes than were sent for {where}")
    if status >= 500 or status == 0:
        return StoreUnreachable(f"the store failed on {where} ({code or status}); retrying later")
    return OffsiteError(f"the store refused {where}: {code or status}")


def _read_and_hash(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).digest()


def _file_size(path: Path) -> int:
    return Path(path).stat().st_size
