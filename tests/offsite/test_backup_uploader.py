"""The device's uploader against a real SeaweedFS: what reaches the bucket, in what order, what
happens when the store is down, refuses the keys or the queue is over its bound, and retention."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from consent.audit_verify import AuditVerifier
from consent.clip_manifest import ClipManifest
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle
from device.events import ClipFinished, SegmentWritten
from hub.offsite import layout
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress, Credentials
from hub.server.backup import OffsiteBackup
from hub.server.config import BackupConfig
from hub.server.state import Device
from tests.device.kit import write_clip
from tests.offsite.kit import uploader

NOW = time.time()


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, **fields: Any) -> None:
        self.seen.append((kind, fields))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.seen]


def _config(bucket: BucketAddress, credentials: Path, **options: Any) -> BackupConfig:
    return BackupConfig(
        endpoint=bucket.endpoint,
        bucket=bucket.bucket,
        prefix=bucket.prefix,
        credentials_file=credentials,
        **options,
    )


@contextlib.asynccontextmanager
async def uploading(
    device: Device, config: BackupConfig, *, retention_days: float = 30.0
) -> AsyncIterator[tuple[OffsiteBackup, Events]]:
    events = Events()
    backup = uploader(device, config, retention_days=retention_days, publish=events)
    task = asyncio.ensure_future(backup.run())
    try:
        yield backup, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        backup.close()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _drained(backup: OffsiteBackup, device: Device) -> Callable[[], bool]:
    def check() -> bool:
        status = backup.status()
        return status.queued_objects == 0 and status.audit_entries_uploaded == device.audit.size

    return check


def _record(device: Device, owner: KeyBundle, backup: OffsiteBackup | None, **kw: Any) -> str:
    """A clip written straight into the store, announced as the pipeline would."""
    clip_id = write_clip(device.store, owner.age_identity, **kw)
    if backup is not None:
        for segment in device.store.list_segments(clip_id):
            backup.notice(SegmentWritten(segment.camera, clip_id, segment.index, segment.size))
        backup.notice(ClipFinished("front", clip_id, 0.0, 0))
    return clip_id


@pytest.fixture
def owner() -> KeyBundle:
    return KeyBundle.generate("x25519")


@pytest.fixture
def device(tmp_path: Path, owner: KeyBundle) -> Device:
    device = Device.open(tmp_path / "data")
    device.owners.add(owner.public(), name="phone", now=int(NOW))
    yield device
    device.close()


@pytest.fixture
def device_credentials(tmp_path: Path, seaweed: SeaweedServer) -> Path:
    return write_credentials_file(tmp_path / "s3-credentials", seaweed.identities.device)


@pytest.mark.asyncio
async def test_segments_manifests_log_and_checkpoint_reach_the_bucket_as_stored(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
) -> None:
    first = _record(device, owner, None, segments=3, start_s=NOW - 120)  # found at start
    async with uploading(device, _config(bucket, device_credentials)) as (backup, events):
        second = _record(device, owner, backup, segments=2, start_s=NOW - 60)
        await until(_drained(backup, device), "the queue to drain")
        status = backup.status()
    assert status.last_error is None
    assert events.kinds() == []

    async with ObjectStore(bucket, seaweed.identities.owner) as bucket_owner:
        names = {item.name for item in await bucket_owner.list()}
        for clip_id in (first, second):
            for segment in device.store.list_segments(clip_id):
                name = layout.segment_name(segment.payload_sha256)
                assert name in names
                stored = await bucket_owner.get_bytes(name, max_size=1 << 20)
                assert stored == segment.path.read_bytes()
            man = layout.manifest_name(layout.clip_token_key(device.identity.private_key), clip_id)
            uploaded = await bucket_owner.get_bytes(man, max_size=1 << 20)
            assert uploaded == device.store.manifest_bytes(clip_id)
            parsed = ClipManifest.verify(uploaded, device.identity.public_key)
            assert parsed.clip_id == clip_id
            assert clip_id not in man
        logs = sorted(n for n in names if n.startswith(layout.LOG))
        checkpoints = sorted(n for n in names if n.startswith(layout.CHECKPOINTS))
        # Segments, one manifest per clip, the log's batches and its checkpoints: every object.
        assert status.uploaded_objects == 3 + 2 + 2 + len(logs) + len(checkpoints) == len(names)
        leaves = b""
        for name in logs:
            blob = await bucket_owner.get_bytes(name, max_size=1 << 20)
            leaves += age.decrypt_bytes([owner.age_identity], blob)
        last = (await bucket_owner.get_bytes(checkpoints[-1], max_size=4096)).decode()
    assert leaves == b"".join(e.leaf + b"\n" for e in device.audit.entries())
    verifier = AuditVerifier(device.identity.public_key, device.audit.origin)
    checkpoint = verifier.open_checkpoint(last)
    assert checkpoint.size == device.audit.size
    assert checkpoint.root_hash == device.audit.root()
    # Nothing in a key tells a camera or a clip time.
    assert not any("front" in n or first[:8] in n or second[:8] in n for n in names)


@pytest.mark.asyncio
async def test_a_store_that_is_down_is_retried_and_the_queue_drains_after(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(seaweed.stop)
    try:
        async with uploading(device, _config(bucket, device_credentials)) as (backup, events):
            clip = _record(device, owner, backup, segments=2)
            await until(lambda: "backup.failed" in events.kinds(), "a backup.failed event")
            status = backup.status()
            assert status.queued_objects == 3
            assert status.last_error is not None
            assert "retrying later" in status.last_error
            assert device.store.clip(clip).segment_count == 2  # recording was not touched
            await asyncio.to_thread(seaweed.start)
            await until(_drained(backup, device), "the queue to drain", timeout_s=120)
            assert events.kinds() == ["backup.failed", "backup.recovered"]
    finally:
        await asyncio.to_thread(seaweed.start)
    assert sum("backup.failed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.asyncio
async def test_refused_credentials_are_an_error_without_the_secret(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = Credentials(seaweed.identities.device.access_key_id, "wrong-secret-0123456789")
    path = write_credentials_file(tmp_path / "wrong", wrong)
    caplog.set_level(logging.DEBUG)
    async with uploading(device, _config(bucket, path)) as (backup, events):
        _record(device, owner, backup, segments=1)
        await until(lambda: "backup.failed" in events.kinds(), "a backup.failed event")
        status = backup.status()
        shown = repr(status) + repr(backup) + str(status.to_json())
    assert status.queued_objects == 2
    assert status.last_error is not None
    assert "refused the credentials" in status.last_error
    assert events.seen[0][1]["error"] == "StoreDenied"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-secret-0123456789" not in logged
    assert "wrong-secret-0123456789" not in shown


@pytest.mark.asyncio
async def test_a_credentials_file_others_can_read_is_refused_with_the_fix(
    device: Device, bucket: BucketAddress, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    path = write_credentials_file(tmp_path / "open", seaweed.identities.device)
    path.chmod(0o644)
    async with uploading(device, _config(bucket, path)) as (backup, events):
        await until(lambda: "backup.failed" in events.kinds(), "a backup.failed event")
        message = backup.status().last_error
    assert message is not None
    assert "chmod 600" in message


@pytest.mark.asyncio
async def test_past_its_bound_the_queue_skips_the_oldest_unheld_segments_and_audits_it(
    device: Device, owner: KeyBundle, seaweed: SeaweedServer, bucket: BucketAddress, tmp_path: Path
) -> None:
    dead = BackupConfig(
        endpoint="http://127.0.0.1:9",
        bucket=bucket.bucket,
        prefix=bucket.prefix,
        credentials_file=write_credentials_file(tmp_path / "c", seaweed.identities.device),
        max_queue_mb=1,
    )
    async with uploading(device, dead) as (backup, _events):
        held = _record(device, owner, backup, segments=2, payload=250_000, start_s=NOW - 300)
        device.store.hold(held, "release-1", NOW + 3600)
        oldest = _record(device, owner, backup, segments=2, payload=250_000, start_s=NOW - 200)
        newest = _record(device, owner, backup, segments=2, payload=250_000, start_s=NOW - 100)
        await until(lambda: backup.status().skipped_objects == 2, "two skipped segments")
        status = backup.status()
    assert status.queued_bytes <= 1024 * 1024
    skipped = [e.body() for e in device.audit.entries() if e.body()["kind"] == "backup.skipped"]
    assert [(e["clip_id"], e["segment_count"], e["reason"]) for e in skipped] == [
        (oldest, 2, "queue_full")
    ]
    assert newest != oldest


@pytest.mark.asyncio
async def test_retention_deletes_old_clips_from_the_bucket_but_not_a_held_one(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
) -> None:
    old = _record(device, owner, None, segments=2, start_s=NOW - 10 * 86400)
    held = _record(device, owner, None, segments=2, start_s=NOW - 9 * 86400)
    recent = _record(device, owner, None, segments=2, start_s=NOW - 3600)
    device.store.hold(held, "release-7", NOW + 86400)
    async with ObjectStore(bucket, seaweed.identities.owner) as bucket_owner:
        async with uploading(device, _config(bucket, device_credentials), retention_days=30) as (
            backup,
            _,
        ):
            await until(_drained(backup, device), "the queue to drain")
        assert len(await bucket_owner.list(layout.SEGMENTS)) == 6
        async with uploading(device, _config(bucket, device_credentials), retention_days=5) as (
            backup,
            _,
        ):
            await until(
                lambda: any(e.body()["kind"] == "backup.deleted" for e in device.audit.entries()),
                "a backup.deleted entry",
            )
        left = {item.name for item in await bucket_owner.list(layout.SEGMENTS)}
    expected = {
        layout.segment_name(s.payload_sha256)
        for clip in (held, recent)
        for s in device.store.list_segments(clip)
    }
    assert left == expected
    deleted = [e.body() for e in device.audit.entries() if e.body()["kind"] == "backup.deleted"]
    assert [(e["clip_id"], e["object_count"]) for e in deleted] == [(old, 3)]


def test_object_names_hide_clip_ids_and_only_the_device_can_make_them() -> None:
    one = KeyBundle.generate("x25519").signing_key
    other = KeyBundle.generate("x25519").signing_key
    clip = "20261202T101500000Z-0a1b2c3d"
    a = layout.manifest_name(layout.clip_token_key(one), clip)
    assert a == layout.manifest_name(layout.clip_token_key(one), clip)
    assert a != layout.manifest_name(layout.clip_token_key(other), clip)
    assert layout.is_manifest_name(a)
    assert "2026" not in a
    digest = hashlib.sha256(b"x").hexdigest()
    assert layout.segment_name(digest) == "seg/" + digest
    with pytest.raises(ValueError, match="64 hex"):
        layout.segment_name("../../etc")
    assert layout.parse_log_name(layout.log_name(42)) == 42
    assert layout.parse_checkpoint_name(layout.checkpoint_name(7)) == 7
    assert layout.parse_checkpoint_name("ckpt/../7") is None


@pytest.mark.asyncio
async def test_a_bucket_over_its_quota_refuses_uploads_and_they_resume_once_it_has_room(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
) -> None:
    # SeaweedFS enforces a bucket quota by making the bucket read-only once usage passes it;
    # here the quota is set and the bucket put in that state, as `s3.bucket.quota.enforce` does.
    await asyncio.to_thread(seaweed.shell, "s3.bucket.quota -name=evidence -op=set -sizeMB=1")
    read_only = "fs.configure -locationPrefix=/buckets/evidence/ -readOnly={} -apply"
    await asyncio.to_thread(seaweed.shell, read_only.format("true"))
    try:
        async with uploading(device, _config(bucket, device_credentials)) as (backup, events):
            clip = _record(device, owner, backup, segments=2, start_s=NOW - 60)
            await until(lambda: "backup.failed" in events.kinds(), "a backup.failed event")
            assert backup.status().queued_objects == 3
            assert device.store.clip(clip).segment_count == 2
            await asyncio.to_thread(seaweed.shell, read_only.format("false"))
            await until(_drained(backup, device), "the queue to drain", timeout_s=120)
            assert events.kinds() == ["backup.failed", "backup.recovered"]
    finally:
        await asyncio.to_thread(seaweed.shell, read_only.format("false"))
        await asyncio.to_thread(seaweed.shell, "s3.bucket.quota -name=evidence -op=remove")


@pytest.mark.asyncio
async def test_a_device_clock_far_off_is_named_as_the_cause(
    device: Device,
    owner: KeyBundle,
    bucket: BucketAddress,
    device_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datetime

    import botocore.auth

    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda *a, **k: real(*a, **k) + datetime.timedelta(hours=2),
    )
    async with uploading(device, _config(bucket, device_credentials)) as (backup, events):
        _record(device, owner, backup, segments=1, start_s=NOW - 60)
        await until(lambda: "backup.failed" in events.kinds(), "a backup.failed event")
        message = backup.status().last_error
    assert events.seen[0][1]["error"] == "ClockSkewed"
    assert message is not None
    assert "device clock within 15 minutes" in message
    assert "NTP" in message


@pytest.mark.asyncio
async def test_when_the_owners_change_the_log_is_uploaded_again_for_the_owners_of_now(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
) -> None:
    async def log_objects(bucket_owner: ObjectStore) -> dict[str, bytes]:
        names = [i.name for i in await bucket_owner.list(layout.LOG)]
        return {n: await bucket_owner.get_bytes(n, max_size=1 << 20) for n in names}

    second = KeyBundle.generate("x25519")
    async with (
        ObjectStore(bucket, seaweed.identities.owner) as bucket_owner,
        uploading(device, _config(bucket, device_credentials)) as (backup, _),
    ):
        _record(device, owner, backup, segments=1, start_s=NOW - 60)
        await until(_drained(backup, device), "the queue to drain")
        before = await log_objects(bucket_owner)
        assert before
        with pytest.raises(DoorwardError):
            age.decrypt_bytes([second.age_identity], next(iter(before.values())))
        device.owners.add(second.public(), name="second phone", now=int(NOW))
        device.audit.append("owner.added", owner_key_id=second.key_id)
        await until(_drained(backup, device), "the log to go up again")
        after = await log_objects(bucket_owner)
    leaves = b"".join(age.decrypt_bytes([second.age_identity], after[n]) for n in sorted(after))
    assert leaves == b"".join(e.leaf + b"\n" for e in device.audit.entries())
    assert (
        b"".join(age.decrypt_bytes([owner.age_identity], after[n]) for n in sorted(after)) == leaves
    )


@pytest.mark.asyncio
async def test_max_upload_kbps_paces_the_uploads_to_that_average(
    device: Device,
    owner: KeyBundle,
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    device_credentials: Path,
) -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    config = _config(bucket, device_credentials, max_upload_kbps=800)
    backup = uploader(device, config, sleep=sleep)
    task = asyncio.ensure_future(backup.run())
    try:
        _record(device, owner, backup, segments=3, payload=100_000, start_s=NOW - 60)
        await until(_drained(backup, device), "the queue to drain")
        sizes = [s.size for s in device.store.list_segments(device.store.list_clips()[0].clip_id)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        backup.close()
    # 800 kb/s: each ~100 kB segment is owed about one second; the pause is that less the time
    # the PUT itself took (never more than it is owed).
    owed = [size * 8 / 800_000 for size in sizes]
    segment_pauses = sorted(pauses, reverse=True)[:3]
    assert len(pauses) >= 3
    for pause, due in zip(segment_pauses, sorted(owed, reverse=True), strict=True):
        assert 0 < pause <= due


@pytest.mark.asyncio
async def test_a_cancel_that_comes_with_a_notice_stops_the_uploader(
    device: Device, seaweed: SeaweedServer, bucket: BucketAddress, device_credentials: Path
) -> None:
    # At shutdown the pipelines close their clips (a notice) as the uploader is cancelled; on
    # Python 3.11 asyncio.wait_for returns the woken event's result instead of raising, and
    # the uploader would go on forever, so serve never finished stopping.
    events = Events()
    backup = OffsiteBackup(
        _config(bucket, device_credentials),
        data_dir=device.data_dir,
        store=device.store,
        audit=device.audit,
        owners=device.owners,
        device_key=device.identity.private_key,
        retention_days=30.0,
        publish=events,
    )
    task = asyncio.ensure_future(backup.run())
    try:
        await until(_drained(backup, device), "the audit log to go up")
        await asyncio.sleep(0.5)  # the uploader waits for work
        backup.notice(ClipFinished("front", "20260101T120000000Z-00000000", 0.0, 0))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=30)
        assert task in done, "the uploader ignored its cancellation"
        assert task.cancelled()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=5)
        backup.close()
