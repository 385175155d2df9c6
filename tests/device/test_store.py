"""The clip store: layout, signed manifests, queries, holds, retention and crash recovery."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity
from crypto.signed import verify_document
from device import ClipHeld, ClipStore, StoreError
from tests.device.kit import T0, write_clip


def test_layout_records_and_signed_manifest(
    store: ClipStore, owner: age.X25519Identity, device: DeviceIdentity
) -> None:
    clip_id = write_clip(store, owner, segments=3)
    assert re.fullmatch(r"20260101T120000000Z-[0-9a-f]{8}", clip_id)
    clip = store.clip(clip_id)
    assert (clip.camera, clip.start_s, clip.end_s, clip.segment_count, clip.finished) == (
        "front",
        T0,
        T0 + 6,
        3,
        True,
    )
    segments = store.list_segments(clip_id)
    assert [s.segment_id for s in segments] == [f"{clip_id}.{i:06d}" for i in range(3)]
    assert (
        segments[1].path == store.data_dir / f"clips/front/2026-01-01/{clip_id}/seg-000001.ts.age"
    )
    assert clip.bytes == sum(s.path.stat().st_size for s in segments)
    assert store.segment(segments[2].segment_id) == segments[2]
    assert store.segment_path(segments[0].segment_id) == segments[0].path

    body = verify_document(json.loads(store.manifest_bytes(clip_id)), device.public_key)
    assert body["clip_id"] == clip_id
    assert body["device_id"] == device.device_id
    assert (body["start"], body["end"]) == ("2026-01-01T12:00:00.000Z", "2026-01-01T12:00:06.000Z")
    for entry, seg in zip(body["segments"], segments, strict=True):
        assert entry == {
            "index": seg.index,
            "start": f"2026-01-01T12:00:0{2 * seg.index}.000Z",
            "duration_ms": 2000,
            "size": seg.size,
            "payload_sha256": age.payload_sha256(seg.path.read_bytes()).hex(),
        }


def test_unknown_names_are_refused(store: ClipStore) -> None:
    with pytest.raises(StoreError) as seg_info:
        store.segment("nope.000000")
    assert str(seg_info.value) == "unknown segment 'nope.000000'"
    with pytest.raises(StoreError, match="unknown clip 'nope'"):
        store.list_segments("nope")
    with pytest.raises(StoreError) as info:
        store.open_clip("../etc", T0)
    assert str(info.value) == (
        "camera name '../etc' must be 1-64 letters, digits, '-' or '_', "
        "starting with a letter or digit"
    )


def test_list_clips_filters_and_pages(store: ClipStore, owner: age.X25519Identity) -> None:
    ids = [
        write_clip(store, owner, camera=cam, start_s=T0 + 100 * i) for i, cam in enumerate("abab")
    ]
    assert [c.clip_id for c in store.list_clips()] == ids
    assert [c.clip_id for c in store.list_clips(camera="b")] == [ids[1], ids[3]]
    assert [c.clip_id for c in store.list_clips(start_s=T0 + 103, end_s=T0 + 250)] == ids[1:3]
    assert [c.clip_id for c in store.list_clips(limit=2, after=ids[0])] == ids[1:3]


def test_retention_by_age_and_budget_never_takes_a_held_clip(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    old, held, mid, new = (write_clip(store, owner, start_s=T0 + 1000 * i) for i in range(4))
    store.hold(held, "release-1", until_s=T0 + 10_000)
    now = T0 + 3500
    assert store.apply_retention(now, max_age_s=3000, max_bytes=10**9) == [old]
    one_clip = store.clip(new).bytes
    assert store.apply_retention(now, max_age_s=10**6, max_bytes=2 * one_clip) == [mid]
    assert store.apply_retention(now, max_age_s=0, max_bytes=0) == [new]
    assert [c.clip_id for c in store.list_clips()] == [held]
    # The hold expires: the clip is ordinary again.
    assert store.apply_retention(T0 + 10_000, max_age_s=0, max_bytes=0) == [held]
    assert store.list_clips() == []
    assert list((store.data_dir / "clips").rglob("*.age")) == []


def test_an_unfinished_clip_is_not_retained_away(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    recording = write_clip(store, owner, finish=False)
    assert store.apply_retention(T0 + 10**6, max_age_s=0, max_bytes=0) == []
    assert store.evict_oldest() is None
    assert store.clip(recording).finished is False


def test_delete_refuses_a_held_clip_until_released(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    store = ClipStore(tmp_path, device, clock=lambda: T0)
    clip_id = write_clip(store, owner)
    store.hold(clip_id, "release-9", until_s=T0 + 60)
    with pytest.raises(ClipHeld) as info:
        store.delete_clip(clip_id)
    assert str(info.value) == (
        f"clip {clip_id!r} is held by a release; release the hold before deleting it"
    )
    assert store.evict_oldest() is None
    store.release_hold("release-9")
    store.delete_clip(clip_id)
    assert store.list_clips() == []
    assert not any((tmp_path / "clips/front/2026-01-01").iterdir())


def test_recovery_makes_files_and_rows_agree(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    store = ClipStore(tmp_path, device)
    kept = write_clip(store, owner, segments=3)
    lost_file = write_clip(store, owner, segments=3, start_s=T0 + 100)
    unfinished = write_clip(store, owner, segments=2, start_s=T0 + 200, finish=False)
    empty = store.open_clip("front", T0 + 300)
    kept_dir = store.list_segments(kept)[0].path.parent
    # What a crash can leave behind:
    store.list_segments(lost_file)[1].path.unlink()  # a row whose file is gone
    (kept_dir / ".seg-000003.ts.age.tmp").write_bytes(b"half a segment")  # a temp file
    (kept_dir / "seg-000003.ts.age").write_bytes(b"renamed, never recorded")  # a file without row
    stray = tmp_path / "clips/front/2026-01-01/20260101T130000000Z-00000000"
    stray.mkdir()
    (stray / "seg-000000.ts.age").write_bytes(b"x")  # a directory of no known clip
    store.close()

    store = ClipStore(tmp_path, device)
    assert [c.clip_id for c in store.list_clips()] == [kept, lost_file, unfinished]
    assert store.clip(kept).segment_count == 3
    assert [s.index for s in store.list_segments(lost_file)] == [0, 2]
    closed = store.clip(unfinished)
    assert (closed.finished, closed.end_s) == (True, T0 + 204)
    with pytest.raises(StoreError, match="unknown clip"):
        store.clip(empty)
    assert not stray.exists()
    assert sorted(p.name for p in kept_dir.iterdir()) == [
        "manifest.json",
        "seg-000000.ts.age",
        "seg-000001.ts.age",
        "seg-000002.ts.age",
    ]
    for clip in store.list_clips():
        body = verify_document(json.loads(store.manifest_bytes(clip.clip_id)), device.public_key)
        assert [e["index"] for e in body["segments"]] == [
            s.index for s in store.list_segments(clip.clip_id)
        ]
        assert body["end"] is not None
        for seg in store.list_segments(clip.clip_id):
            assert len(age.decrypt_bytes([owner], seg.path.read_bytes())) == 1000


def test_deletions_the_store_makes_on_its_own_are_reported_with_their_reason(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    reported: list[tuple[str, str]] = []
    store = ClipStore(
        tmp_path, device, clock=lambda: T0 + 5000, on_deleted=lambda *r: reported.append(r)
    )
    old, mid, new = (write_clip(store, owner, start_s=T0 + 1000 * i) for i in range(3))
    store.apply_retention(T0 + 2500, max_age_s=2000, max_bytes=10**9)
    store.apply_retention(T0 + 2500, max_age_s=10**6, max_bytes=store.clip(new).bytes)
    assert store.evict_oldest() == new
    assert reported == [(old, "retention_age"), (mid, "retention_budget"), (new, "disk_full")]
    store.close()
