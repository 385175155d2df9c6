"""`doorward serve --backup` as a process, against a real SeaweedFS: the store goes down for 60 s
while the camera records (nothing lost, recording unaffected, the queue drains after), the
process is SIGKILLed twenty times mid-upload (it resumes; no object in the bucket is anything but
whole and what the device signed), and refused credentials at start leave recording alone."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consent.clip_manifest import ClipManifest
from crypto import age
from crypto.keys import KeyBundle
from hub.offsite import layout
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress, Credentials, OffsiteError, StoreUnreachable
from hub.server.state import Device
from tests.kit import child_env, serve_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# Someone keeps walking past: the camera records without a pause, 1-second segments.
BUSY_SCENE = """\
[camera]
width = 320
height = 180
fps = 10
seconds = 900
seed = 5

[[actor]]
id = "walker"
kind = "person"
enter_s = 0.5
leave_s = 899
path = [[0.1, 0.8], [0.9, 0.8], [0.1, 0.8], [0.9, 0.8], [0.1, 0.8]]
times = [0.5, 200, 400, 600, 899]
"""
CONFIG = "segment_s = 1.0\npre_roll_s = 1.0\npost_roll_s = 1.0\n"


def prepare(tmp_path: Path) -> tuple[Device, KeyBundle]:
    owner = KeyBundle.generate("x25519")
    device = Device.open(tmp_path / "data")
    device.owners.add(owner.public(), name="phone", now=int(time.time()))
    device.close()
    (tmp_path / "scene.toml").write_text(BUSY_SCENE)
    (tmp_path / "doorward.toml").write_text(CONFIG)
    return device, owner


def start_serve(
    tmp_path: Path, bucket: BucketAddress, credentials: Path, log_name: str = "serve.log"
) -> subprocess.Popen[bytes]:
    env = child_env("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NOTIFY_SOCKET")
    return subprocess.Popen(
        serve_command(
            tmp_path,
            f"front=simulated:{tmp_path / 'scene.toml'}",
            "--backup",
            f"s3://{bucket.bucket}/{bucket.prefix}",
            "--backup-endpoint",
            bucket.endpoint,
            "--backup-credentials",
            str(credentials),
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / log_name).open("ab"),
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(60)


def segments(tmp_path: Path) -> dict[str, tuple[str, int]]:
    """The store's segments: payload SHA-256 → (file, size)."""
    db = sqlite3.connect(f"file:{tmp_path / 'data' / 'doorward.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT s.payload_sha256, c.rel_dir, s.idx, s.size FROM segments s "
            "JOIN clips c ON c.clip_id = s.clip_id"
        ).fetchall()
    finally:
        db.close()
    return {sha: (f"{rel}/seg-{idx:06d}.ts.age", size) for sha, rel, idx, size in rows}


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def bucket_objects(bucket: BucketAddress, keys: Credentials) -> dict[str, bytes]:
    """Every object in the bucket. A SeaweedFS just restarted may answer 500 for a while: a read
    is tried again for up to 30 s before the error counts."""

    async def read() -> dict[str, bytes]:
        async with ObjectStore(bucket, keys) as store:
            return {
                item.name: await store.get_bytes(item.name, max_size=64 << 20)
                for item in await store.list()
            }

    deadline = time.monotonic() + 30
    while True:
        try:
            return asyncio.run(read())
        except StoreUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def bucket_names(bucket: BucketAddress, keys: Credentials) -> set[str]:
    """The names in the bucket; empty while the store does not answer (it may be restarting)."""

    async def names() -> set[str]:
        async with ObjectStore(bucket, keys) as store:
            return {item.name for item in await store.list()}

    try:
        return asyncio.run(names())
    except OffsiteError:
        return set()


def check_every_object(
    objects: dict[str, bytes], device_key: object, owner: KeyBundle
) -> tuple[int, int]:
    """Every segment object is a whole age file whose payload hashes to its name and opens with
    the owner's key; every manifest verifies and lists only uploaded segments; the log's
    entries decrypt. Returns (segments, manifests)."""
    segment_count = manifest_count = 0
    for name, data in objects.items():
        if name.startswith(layout.SEGMENTS):
            assert layout.SEGMENTS + age.payload_sha256(data).hex() == name
            age.decrypt_bytes([owner.age_identity], data)  # whole: every chunk authenticates
            segment_count += 1
        elif name.startswith(layout.MANIFESTS):
            manifest = ClipManifest.verify(data, device_key.public_key())  # type: ignore[attr-defined]
            for segment in manifest.segments:
                assert layout.segment_name(segment.payload_sha256) in objects, name
            manifest_count += 1
        elif name.startswith(layout.LOG):
            age.decrypt_bytes([owner.age_identity], data)
    return segment_count, manifest_count


def device_key(tmp_path: Path) -> object:
    from crypto.keys import DeviceIdentity

    return DeviceIdentity.load_or_create(tmp_path / "data" / "keys" / "device.ed25519").private_key


def test_a_store_down_for_a_minute_loses_nothing_and_recording_goes_on(
    tmp_path: Path, seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    _, owner = prepare(tmp_path)
    credentials = write_credentials_file(tmp_path / "s3", seaweed.identities.device)
    process = start_serve(tmp_path, bucket, credentials)
    try:
        wait_for(lambda: len(segments(tmp_path)) >= 3, "three segments", 60)
        seaweed.stop()
        down_at = len(segments(tmp_path))
        time.sleep(60)
        during = len(segments(tmp_path))
        # Segments (cut at keyframes, 1-2 s) kept coming while the store was away.
        assert during - down_at >= 20
        seaweed.start()
        recorded = segments(tmp_path)

        def all_uploaded() -> bool:
            names = bucket_names(bucket, seaweed.identities.owner)
            return {layout.segment_name(sha) for sha in recorded} <= names

        wait_for(all_uploaded, "every segment recorded before the restart in the bucket", 180)
    finally:
        assert stop(process) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "backup.failed error=StoreUnreachable" in log
    assert "backup.recovered" in log
    assert "pipeline.error" not in log
    objects = bucket_objects(bucket, seaweed.identities.owner)
    for sha, (rel, _size) in recorded.items():
        assert objects[layout.segment_name(sha)] == (tmp_path / "data" / rel).read_bytes()
    check_every_object(objects, device_key(tmp_path), owner)


def test_twenty_kills_mid_upload_leave_only_whole_objects_and_the_backup_resumes(
    tmp_path: Path, seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    _, owner = prepare(tmp_path)
    credentials = write_credentials_file(tmp_path / "s3", seaweed.identities.device)
    for attempt in range(20):
        process = start_serve(tmp_path, bucket, credentials)
        # From the first second of recording to a few seconds in: uploads are in flight.
        time.sleep(2.5 + (attempt % 5) * 0.6)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        check_every_object(
            bucket_objects(bucket, seaweed.identities.owner), device_key(tmp_path), owner
        )
    process = start_serve(tmp_path, bucket, credentials)
    try:
        wait_for(lambda: len(segments(tmp_path)) >= 1, "a segment after the last start", 60)
        time.sleep(3)
        recorded = segments(tmp_path)

        def all_uploaded() -> bool:
            names = bucket_names(bucket, seaweed.identities.owner)
            return {layout.segment_name(sha) for sha in recorded} <= names

        wait_for(all_uploaded, "every segment recorded across the kills in the bucket", 120)
    finally:
        assert stop(process) == 0
    objects = bucket_objects(bucket, seaweed.identities.owner)
    segment_count, manifest_count = check_every_object(objects, device_key(tmp_path), owner)
    assert segment_count >= len(recorded)
    assert manifest_count >= 1
    log = (tmp_path / "serve.log").read_text()
    assert "backup.started" in log


def test_refused_credentials_at_start_leave_recording_alone(
    tmp_path: Path, seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    prepare(tmp_path)
    wrong = Credentials(seaweed.identities.device.access_key_id, "a-wrong-secret-9876543210")
    credentials = write_credentials_file(tmp_path / "s3", wrong)
    process = start_serve(tmp_path, bucket, credentials)
    try:
        wait_for(lambda: len(segments(tmp_path)) >= 3, "three segments", 60)
        log = (tmp_path / "serve.log").read_text()
        wait_for(
            lambda: "backup.failed error=StoreDenied" in (tmp_path / "serve.log").read_text(),
            "the refusal in the log",
            30,
        )
    finally:
        assert stop(process) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "check the access key" in log
    assert "a-wrong-secret-9876543210" not in log
    assert bucket_objects(bucket, seaweed.identities.owner) == {}
