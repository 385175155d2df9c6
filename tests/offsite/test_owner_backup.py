"""``doorward owner backup list | verify | restore`` against a real SeaweedFS server, on the data of
a real device (clips from the real pipeline, its store's manifests and its audit log) uploaded in
the object layout with the device's write-only keys; the owner reads with read-only keys."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import av
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.audit import ENTRY_KINDS, AuditLog, audit_origin
from consent.clip_manifest import ClipManifest
from crypto import age
from hub.client.backup import MEMORY_SEGMENT_BYTES, BackupReader
from hub.offsite.layout import checkpoint_name, log_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress, StoreDenied
from tests.offsite.backupkit import (
    Recorded,
    record_clip,
    recorded_device,
    run_owner_cli,
    upload_as_device,
)


@pytest_asyncio.fixture
async def recorded(tmp_path: Path) -> Recorded:
    return await recorded_device(tmp_path, clips=2)


@pytest.fixture
def creds(seaweed: SeaweedServer, tmp_path: Path) -> Path:
    return write_credentials_file(tmp_path / "owner.credentials", seaweed.identities.owner)


def _flags(recorded: Recorded, bucket: BucketAddress, creds: Path) -> list[str]:
    return [
        "--profile",
        str(recorded.profile.directory),
        "--endpoint",
        bucket.endpoint,
        "--bucket",
        f"s3://{bucket.bucket}/{bucket.prefix}",
        "--credentials",
        str(creds),
    ]


async def _cli(argv: list[str]) -> tuple[int, dict[str, Any], str]:
    code, out, err = await asyncio.to_thread(run_owner_cli, ["backup", *argv, "--json"])
    return code, json.loads(out) if out.strip() else {}, err


async def _put_as_device(seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded) -> int:
    """The device's own uploader, run until the bucket holds everything; the log's size."""
    return await upload_as_device(recorded, seaweed, bucket)


def _duration_s(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [
            float(p.pts * p.time_base)
            for p in container.demux(stream)
            if p.pts is not None and p.size
        ]
        frames = sum(1 for _ in av.open(str(path)).decode(video=0))
    assert frames > 0
    return max(times) - min(times) + 1 / float(stream.average_rate or 10)


@pytest.mark.asyncio
async def test_list_verify_and_restore_a_whole_backup(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    held = recorded.hold_checkpoint()
    await record_clip(recorded)  # a third clip, after the checkpoint the phone holds
    size = await _put_as_device(seaweed, bucket, recorded)
    assert held < size
    flags = _flags(recorded, bucket, creds)

    code, saved, _ = await _cli(["configure", *flags])
    assert code == 0
    assert saved["credentials_file"] == str(creds)
    assert "aws_secret" not in (recorded.profile.directory / "backup.json").read_text()
    profile = ["--profile", str(recorded.profile.directory)]  # saved settings from now on

    code, listed, _ = await _cli(["list", *profile])
    assert code == 0
    assert sorted(r["clip_id"] for r in listed["clips"]) == sorted(recorded.clip_ids)
    for row in listed["clips"]:
        clip = recorded.device.store.clip(row["clip_id"])
        assert (row["segments"], row["bytes"], row["camera"]) == (
            clip.segment_count,
            clip.bytes,
            "front",
        )
        assert row["finished"]
        assert row["start"] == pytest.approx(clip.start_s, abs=0.001)

    code, verified, _ = await _cli(["verify", *profile])
    assert code == 0, verified["problems"]
    assert verified["log_verified"]
    assert verified["log_size"] == size
    assert verified["held_size"] == held
    assert {c["seal"] for c in verified["clips"]} == {"sealed"}

    out = tmp_path / "restored"
    code, restored, _ = await _cli(["restore", *profile, "--out", str(out)])
    assert code == 0, restored["problems"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}.ts" for c in recorded.clip_ids)
    for clip_id in recorded.clip_ids:
        segments = recorded.device.store.list_segments(clip_id)
        plaintext = b"".join(
            age.decrypt_bytes([recorded.owner.age_identity], s.path.read_bytes()) for s in segments
        )
        path = out / f"{clip_id}.ts"
        assert path.read_bytes() == plaintext
        expected_s = sum(s.duration_s for s in segments)
        assert _duration_s(path) == pytest.approx(expected_s, abs=0.25)


@pytest.mark.asyncio
async def test_restore_of_one_clip_writes_only_that_clip(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    wanted = recorded.clip_ids[1]
    out = tmp_path / "one"
    code, result, _ = await _cli(
        ["restore", *_flags(recorded, bucket, creds), "--out", str(out), "--clip", wanted]
    )
    assert code == 0, result["problems"]
    assert [p.name for p in out.iterdir()] == [f"{wanted}.ts"]


@pytest.mark.asyncio
async def test_segments_spooled_to_disk_restore_the_same_and_leave_no_spool(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, tmp_path: Path
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    device = recorded.device.identity
    outputs = {}
    async with ObjectStore(bucket, seaweed.identities.owner) as store:
        for memory_bytes in (0, MEMORY_SEGMENT_BYTES):
            reader = BackupReader(
                store,
                device_id=device.device_id,
                device_key=device.public_key,
                identities=[recorded.owner.age_identity],
                memory_segment_bytes=memory_bytes,
            )
            out = tmp_path / f"out-{memory_bytes}"
            report = await reader.restore(out)
            assert report.ok, report.problems
            outputs[memory_bytes] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs[0] == outputs[MEMORY_SEGMENT_BYTES]
    assert sorted(outputs[0]) == sorted(f"{c}.ts" for c in recorded.clip_ids)


async def _alter(store: ObjectStore, name: str, how: str) -> None:
    data = await store.get_bytes(name, max_size=10**8)
    if how == "flip":
        data = data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]
    elif how == "truncate":
        data = data[: len(data) // 2]
    if how == "delete":
        await store.delete(name)
    else:
        await store.put_bytes(name, data)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("flip", "payload SHA-256"),
        ("truncate", "truncated"),
        ("delete", "missing"),
    ],
)
async def test_an_altered_truncated_or_deleted_segment_is_named_and_its_clip_not_restored(
    seaweed: SeaweedServer,
    bucket: BucketAddress,
    recorded: Recorded,
    creds: Path,
    tmp_path: Path,
    how: str,
    expected: str,
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    bad_clip, good_clip = recorded.clip_ids
    victim = recorded.segment_names(bad_clip)[1]
    async with ObjectStore(bucket, seaweed.identities.admin) as admin:
        await _alter(admin, victim, how)
    flags = _flags(recorded, bucket, creds)

    code, verified, _ = await _cli(["verify", *flags])
    assert code == 1
    assert [p["object"] for p in verified["problems"]] == [victim]
    assert expected in verified["problems"][0]["problem"]
    assert bad_clip in verified["problems"][0]["problem"]

    out = tmp_path / "out"
    code, _, _ = await _cli(["restore", *flags, "--out", str(out)])
    assert code == 1
    assert sorted(os.listdir(out)) == [f"{good_clip}.ts"]  # no file, no partial, no spool
    code, text_out, _ = await asyncio.to_thread(run_owner_cli, ["backup", "verify", *flags])
    assert code == 1
    assert f"FAILED {victim}:" in text_out


@pytest.mark.asyncio
async def test_a_manifest_signed_by_another_key_is_named(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    clip_id = recorded.clip_ids[0]
    name = recorded.manifest_name(clip_id)
    forged = recorded.manifest(clip_id).sign(Ed25519PrivateKey.generate())
    async with ObjectStore(bucket, seaweed.identities.admin) as admin:
        await admin.put_bytes(name, forged)
    flags = _flags(recorded, bucket, creds)
    code, verified, _ = await _cli(["verify", *flags])
    assert code == 1
    objects = [p["object"] for p in verified["problems"]]
    assert name in objects
    assert "not a clip manifest signed by the paired device" in verified["problems"][0]["problem"]
    # The log still seals the clip, so its manifest counts as missing too.
    assert any(
        clip_id in o and "missing" in p["problem"]
        for o, p in zip(objects, verified["problems"], strict=True)
    )
    code, listed, _ = await _cli(["list", *flags])
    assert code == 1
    assert [r["clip_id"] for r in listed["clips"]] == [recorded.clip_ids[1]]
    out = tmp_path / "out"
    code, _, _ = await _cli(["restore", *flags, "--out", str(out)])
    assert code == 1
    assert os.listdir(out) == [f"{recorded.clip_ids[1]}.ts"]


@pytest.mark.asyncio
async def test_a_manifest_the_device_re_signed_after_sealing_is_caught_by_the_seal(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    clip_id = recorded.clip_ids[0]
    name = recorded.manifest_name(clip_id)
    original = recorded.manifest(clip_id)
    shorter = ClipManifest(
        original.device_id,
        original.clip_id,
        original.camera,
        original.start_ms,
        original.end_ms,
        original.segments[:-1],
    )
    async with ObjectStore(bucket, seaweed.identities.device) as device:
        await device.put_bytes(name, shorter.sign(recorded.device.identity.private_key))
    code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
    assert code == 1
    assert verified["problems"][0]["object"] == name
    assert "not the one the audit log sealed" in verified["problems"][0]["problem"]


@pytest.mark.asyncio
async def test_an_altered_log_batch_is_named(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    await record_clip(recorded)
    await _put_as_device(seaweed, bucket, recorded)
    async with ObjectStore(bucket, seaweed.identities.admin) as admin:
        data = bytearray(await admin.get_bytes(log_name(0), max_size=10**6))
        data[-5] ^= 1
        await admin.put_bytes(log_name(0), bytes(data))
    code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
    assert code == 1
    assert not verified["log_verified"]
    assert verified["problems"][0]["object"] == log_name(0)
    assert "cannot be decrypted" in verified["problems"][0]["problem"]


@pytest.mark.asyncio
async def test_a_missing_log_batch_and_a_batch_of_rewritten_entries_are_named(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path
) -> None:
    first = await _put_as_device(seaweed, bucket, recorded)
    for _ in range(2):
        await record_clip(recorded)
    size = await _put_as_device(seaweed, bucket, recorded)  # a second batch: log/<first>
    assert size > first
    flags = _flags(recorded, bucket, creds)
    async with ObjectStore(bucket, seaweed.identities.admin) as admin:
        batch = await admin.get_bytes(log_name(first), max_size=10**6)
        await admin.delete(log_name(first))
        code, verified, _ = await _cli(["verify", *flags])
        assert code == 1
        assert verified["problems"][0]["object"] == log_name(first)
        assert "missing" in verified["problems"][0]["problem"]
        # The entries re-encrypted to the owner (so they decrypt) but one rewritten.
        leaves = age.decrypt_bytes([recorded.owner.age_identity], batch)
        assert b"front" in leaves
        recipients = [recorded.owner.age_identity.recipient()]
        rewritten = leaves.replace(b"front", b"frunt", 1)
        await admin.put_bytes(log_name(first), age.encrypt_bytes(recipients, rewritten))
        code, verified, _ = await _cli(["verify", *flags])
        assert code == 1
        assert verified["problems"][0]["object"] == log_name(first)
        assert "do not hash to the checkpoint's root" in verified["problems"][0]["problem"]
        await admin.put_bytes(log_name(first), batch)
        code, verified, _ = await _cli(["verify", *flags])
        assert code == 0, verified["problems"]


@pytest.mark.asyncio
async def test_a_checkpoint_rolled_back_below_the_held_one_is_named(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path
) -> None:
    small = recorded.device.audit.size
    await _put_as_device(seaweed, bucket, recorded)
    await record_clip(recorded)
    held = recorded.hold_checkpoint()  # the phone audited the device after the third clip
    assert held > small
    code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
    assert code == 1
    assert verified["problems"][0]["object"] == checkpoint_name(small)
    assert "rolled back" in verified["problems"][0]["problem"]
    assert await _put_as_device(seaweed, bucket, recorded) == held
    code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
    assert code == 0, verified["problems"]
    assert verified["held_size"] == held


@pytest.mark.asyncio
async def test_a_log_that_disagrees_with_the_held_checkpoint_is_named(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    # The phone holds a checkpoint of another history of the same device (same key, other
    # entries): the bucket's log must not extend it.
    key = recorded.device.identity.private_key
    fork = AuditLog(tmp_path / "fork.db", signer=key, origin=audit_origin(key.public_key()))
    fork.append("clip.deleted", clip_id="x", reason="retention_age")
    recorded.profile.checkpoint_path(recorded.device.identity.device_id).write_text(
        fork.checkpoint()
    )
    await _put_as_device(seaweed, bucket, recorded)
    code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
    assert code == 1
    assert verified["problems"][0]["object"] == log_name(0)
    assert (
        "disagrees with the checkpoint of size 1 this profile holds"
        in (verified["problems"][0]["problem"])
    )


@pytest.mark.asyncio
async def test_objects_the_log_says_were_deleted_are_not_problems(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    gone = recorded.clip_ids[0]
    names = [recorded.manifest_name(gone), *recorded.segment_names(gone)]
    recorded.device.audit.append("clip.deleted", clip_id=gone, reason="retention_age")
    async with ObjectStore(bucket, seaweed.identities.device) as device:
        for name in names[1:]:  # segments first, as retention would
            await device.delete(name)
        code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
        assert code == 1  # the log does not say so yet: the manifest names missing segments
        assert {p["object"] for p in verified["problems"]} == set(names[1:])
        await _put_as_device(seaweed, bucket, recorded)
        code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
        assert code == 0, verified["problems"]
        await device.delete(names[0])
        code, verified, _ = await _cli(["verify", *_flags(recorded, bucket, creds)])
        assert code == 0, verified["problems"]
        assert [c["clip_id"] for c in verified["clips"]] == [recorded.clip_ids[1]]


@pytest.mark.asyncio
@pytest.mark.skipif(
    "backup.skipped" not in ENTRY_KINDS, reason="the entry kind comes with the device's uploader"
)
async def test_segments_the_device_skipped_are_notes_and_the_rest_is_restored(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    clip_id = recorded.clip_ids[0]
    skipped = recorded.segment_names(clip_id)[0]
    recorded.device.audit.append(
        "backup.skipped", clip_id=clip_id, segment_count=1, reason="queue_full"
    )
    await _put_as_device(seaweed, bucket, recorded)
    async with ObjectStore(bucket, seaweed.identities.admin) as admin:
        await admin.delete(skipped)
    out = tmp_path / "out"
    code, restored, _ = await _cli(["restore", *_flags(recorded, bucket, creds), "--out", str(out)])
    assert code == 0, restored["problems"]
    assert any(skipped in note and "skipped" in note for note in restored["notes"])
    rest = recorded.device.store.list_segments(clip_id)[1:]
    identity = recorded.owner.age_identity
    assert (out / f"{clip_id}.ts").read_bytes() == b"".join(
        age.decrypt_bytes([identity], s.path.read_bytes()) for s in rest
    )


@pytest.mark.asyncio
async def test_a_clip_the_device_never_finished_is_restored_and_marked_recording(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path, tmp_path: Path
) -> None:
    store = recorded.device.store
    clip_id = store.open_clip("front", 1_767_300_000.0)
    file = store.open_segment(clip_id, 0)
    with age.Encryptor(file, [recorded.owner.age_identity.recipient()]) as encryptor:  # type: ignore[arg-type]
        encryptor.write(b"\x47" * 188 * 40)
    store.commit_segment(
        clip_id,
        0,
        file,
        start_s=1_767_300_000.0,
        duration_s=2.0,
        payload_sha256=encryptor.payload_sha256,
    )
    await _put_as_device(seaweed, bucket, recorded)
    out = tmp_path / "out"
    code, restored, _ = await _cli(["restore", *_flags(recorded, bucket, creds), "--out", str(out)])
    assert code == 0, restored["problems"]
    states = {c["clip_id"]: c["seal"] for c in restored["clips"]}
    assert states[clip_id] == "recording"
    assert (out / f"{clip_id}.ts").read_bytes() == b"\x47" * 188 * 40


@pytest.mark.asyncio
async def test_the_owner_keys_cannot_write_or_delete(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded
) -> None:
    await _put_as_device(seaweed, bucket, recorded)
    name = recorded.segment_names(recorded.clip_ids[0])[0]
    async with ObjectStore(bucket, seaweed.identities.owner) as owner:
        with pytest.raises(StoreDenied):
            await owner.put_bytes(name, b"replaced")
        with pytest.raises(StoreDenied):
            await owner.delete(name)
        with pytest.raises(StoreDenied):
            await owner.put_bytes("seg/new", b"x")
        assert len(await owner.get_bytes(name, max_size=10**6)) > 1000


@pytest.mark.asyncio
async def test_bad_settings_get_clear_errors_without_the_secret(
    seaweed: SeaweedServer, bucket: BucketAddress, recorded: Recorded, creds: Path
) -> None:
    profile = ["--profile", str(recorded.profile.directory)]
    code, out, err = await asyncio.to_thread(run_owner_cli, ["backup", "verify", *profile])
    assert code == 1
    assert "no backup is configured" in err
    await asyncio.to_thread(creds.chmod, 0o644)
    code, out, err = await asyncio.to_thread(
        run_owner_cli, ["backup", "configure", *_flags(recorded, bucket, creds)]
    )
    assert code == 1
    assert str(creds) in err
    await asyncio.to_thread(creds.chmod, 0o600)
    flags = _flags(recorded, bucket, creds)
    flags[flags.index("--bucket") + 1] = "https://example/bucket"
    code, out, err = await asyncio.to_thread(run_owner_cli, ["backup", "list", *flags])
    assert code == 1
    assert "s3://BUCKET/PREFIX" in err
    wrong = write_credentials_file(
        creds.with_name("wrong"),
        type(seaweed.identities.owner)(seaweed.identities.owner.access_key_id, "not-the-secret"),
    )
    flags = _flags(recorded, bucket, wrong)
    code, out, err = await asyncio.to_thread(run_owner_cli, ["backup", "list", *flags])
    assert code == 1
    assert "check the access key" in err
    assert "not-the-secret" not in err + out
    assert seaweed.identities.owner.secret_access_key not in err + out
