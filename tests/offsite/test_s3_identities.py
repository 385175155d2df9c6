"""The S3 client against a real SeaweedFS server with real identities: what the device's key may
and may not do, checksums, multipart uploads and how errors are sorted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import aiohttp
import pytest

from hub.offsite.s3 import MULTIPART_PART_SIZE, ObjectStore
from hub.offsite.seaweed import SeaweedServer
from hub.offsite.target import (
    BucketAddress,
    ChecksumMismatch,
    Credentials,
    ObjectMissing,
    OffsiteError,
    StoreDenied,
    StoreUnreachable,
)


@pytest.mark.asyncio
async def test_the_device_key_writes_under_its_prefix_and_reads_only_what_it_presigns(
    seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    ids = seaweed.identities
    other = BucketAddress(bucket.endpoint, bucket.bucket, "someone-else")
    async with (
        ObjectStore(bucket, ids.device) as device,
        ObjectStore(bucket, ids.owner) as owner,
        ObjectStore(other, ids.admin) as admin_other,
        ObjectStore(other, ids.device) as device_other,
    ):
        await device.put_bytes("seg/one", b"ciphertext")
        await admin_other.put_bytes("seg/theirs", b"not the device's")
        assert [o.name for o in await owner.list()] == ["seg/one"]
        assert await owner.get_bytes("seg/one", max_size=100) == b"ciphertext"
        # Segments and releases it may read (the presigned URLs it hands out); nothing else.
        assert await device.get_bytes("seg/one", max_size=100) == b"ciphertext"
        await device.put_bytes("man/one", b"signed manifest")
        with pytest.raises(StoreDenied):
            await device.get_bytes("man/one", max_size=100)
        await device.delete("man/one")
        with pytest.raises(StoreDenied):
            await device.list()
        with pytest.raises(StoreDenied):
            await device_other.get_bytes("seg/theirs", max_size=100)
        with pytest.raises(StoreDenied):
            await device_other.list()
        with pytest.raises(StoreDenied):
            await device_other.put_bytes("seg/mine-now", b"x")
        with pytest.raises(StoreDenied):
            await device_other.delete("seg/theirs")
        with pytest.raises(StoreDenied):
            await owner.put_bytes("seg/two", b"x")
        await device.delete("seg/one")
        assert await owner.list() == []
        assert await admin_other.get_bytes("seg/theirs", max_size=100) == b"not the device's"


@pytest.mark.asyncio
async def test_a_put_whose_bytes_changed_is_refused_and_nothing_is_stored(
    seaweed: SeaweedServer, bucket: BucketAddress, tmp_path: Path
) -> None:
    path = tmp_path / "segment.age"
    path.write_bytes(b"the bytes that were queued")
    queued = hashlib.sha256(path.read_bytes()).digest()
    path.write_bytes(b"other bytes since")
    async with (
        ObjectStore(bucket, seaweed.identities.device) as device,
        ObjectStore(bucket, seaweed.identities.owner) as owner,
    ):
        with pytest.raises(ChecksumMismatch):
            await device.put_file("seg/x", path, sha256=queued)
        assert await owner.list() == []
        with pytest.raises(ObjectMissing):
            await owner.get_bytes("seg/x", max_size=100)


@pytest.mark.asyncio
async def test_a_large_file_goes_up_in_checked_parts_and_reads_back_whole(
    seaweed: SeaweedServer, bucket: BucketAddress, tmp_path: Path
) -> None:
    path = tmp_path / "bundle.tar"
    data = os.urandom(MULTIPART_PART_SIZE * 2 + 12345)
    path.write_bytes(data)
    async with (
        ObjectStore(bucket, seaweed.identities.device) as device,
        ObjectStore(bucket, seaweed.identities.owner) as owner,
    ):
        assert await device.put_file("rel/big", path) == len(data)
        out = tmp_path / "back"
        with out.open("wb") as f:
            size, digest = await owner.get_file("rel/big", f)
        assert (size, digest) == (len(data), hashlib.sha256(data).digest())


@pytest.mark.asyncio
async def test_a_presigned_url_reads_one_object_without_credentials(
    seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    async with ObjectStore(bucket, seaweed.identities.device) as device:
        await device.put_bytes("rel/r1", b"bundle")
        url = await device.presign_get("rel/r1", 60)
        with pytest.raises(OffsiteError, match="1 s to 7 days"):
            await device.presign_get("rel/r1", 0)
    assert seaweed.identities.device.secret_access_key not in url
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as answer:
            assert answer.status == 200
            assert await answer.read() == b"bundle"
        async with http.get(url.replace("rel/r1", "rel/r2")) as answer:
            assert answer.status == 403


@pytest.mark.asyncio
async def test_wrong_keys_and_a_dead_endpoint_are_told_apart_without_the_secret(
    seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    wrong = Credentials(seaweed.identities.device.access_key_id, "not-the-secret-at-all")
    async with ObjectStore(bucket, wrong) as device:
        with pytest.raises(StoreDenied) as denied:
            await device.put_bytes("seg/a", b"x")
    assert "not-the-secret-at-all" not in str(denied.value)
    assert "check the access key" in str(denied.value)
    dead = BucketAddress("http://127.0.0.1:9", bucket.bucket, bucket.prefix)
    async with ObjectStore(dead, seaweed.identities.device, connect_timeout_s=1) as device:
        with pytest.raises(StoreUnreachable, match="retrying later"):
            await device.put_bytes("seg/a", b"x")
