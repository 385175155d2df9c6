"""Sealing: a finished clip's last signed manifest goes to ``on_sealed`` once, is never rewritten
afterwards, and a seal that was not delivered is delivered when the store next opens."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import DeviceIdentity
from device import ClipSeal, ClipStore
from tests.device.kit import T0, write_clip


def _seal_of(store: ClipStore, clip_id: str) -> ClipSeal:
    digest = hashlib.sha256(store.manifest_bytes(clip_id)).hexdigest()
    return ClipSeal(clip_id, "front", store.clip(clip_id).segment_count, digest)


def test_a_finished_clip_is_sealed_with_its_last_manifest(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    seals: list[ClipSeal] = []
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    try:
        recording = write_clip(store, owner, segments=2, finish=False)
        assert seals == []  # still recording: its manifest will change
        clip_id = write_clip(store, owner, segments=3, start_s=T0 + 100)
        assert seals == [_seal_of(store, clip_id)]
        assert seals[0].segment_count == 3
        # Finishing it again changes nothing: a sealed manifest is never rewritten.
        before = store.manifest_bytes(clip_id)
        store.finish_clip(clip_id, T0 + 500)
        assert store.manifest_bytes(clip_id) == before
        assert len(seals) == 1
        store.finish_clip(recording, T0 + 4)
        assert seals[1] == _seal_of(store, recording)
    finally:
        store.close()


def test_a_seal_that_failed_is_delivered_at_the_next_open(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    def failing(seal: ClipSeal) -> None:
        raise DoorwardError("the audit log is unavailable")

    store = ClipStore(tmp_path, device, on_sealed=failing)
    clip_id = write_clip(store, owner)  # recording goes on: finishing does not raise
    assert store.clip(clip_id).finished
    manifest = store.manifest_bytes(clip_id)
    store.close()

    seals: list[ClipSeal] = []
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    store.close()
    assert seals == [ClipSeal(clip_id, "front", 2, hashlib.sha256(manifest).hexdigest())]
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    store.close()
    assert len(seals) == 1  # delivered once


def test_clips_of_a_store_from_before_sealing_are_sealed_at_the_first_open(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    store = ClipStore(tmp_path, device)
    old = write_clip(store, owner)
    manifest = store.manifest_bytes(old)
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "doorward.db")) as db:
        db.execute("ALTER TABLE clips DROP COLUMN sealed")  # as an older version left it
    seals: list[ClipSeal] = []
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    try:
        assert seals == [ClipSeal(old, "front", 2, hashlib.sha256(manifest).hexdigest())]
        assert store.manifest_bytes(old) == manifest
    finally:
        store.close()


def test_recovery_keeps_a_sealed_manifest_when_a_segment_is_lost(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    seals: list[ClipSeal] = []
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    clip_id = write_clip(store, owner, segments=3)
    manifest = store.manifest_bytes(clip_id)
    lost = store.segment_path(f"{clip_id}.000001")
    store.close()
    lost.unlink()
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    try:
        assert [s.index for s in store.list_segments(clip_id)] == [0, 2]
        assert store.manifest_bytes(clip_id) == manifest  # still the one sealed
        assert len(seals) == 1
    finally:
        store.close()


def test_a_clip_closed_by_recovery_is_sealed(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    store = ClipStore(tmp_path, device)
    clip_id = write_clip(store, owner, finish=False)  # the power went out while recording
    store.close()
    seals: list[ClipSeal] = []
    store = ClipStore(tmp_path, device, on_sealed=seals.append)
    try:
        assert store.clip(clip_id).finished
        assert seals == [_seal_of(store, clip_id)]
    finally:
        store.close()


def test_recovery_tries_a_failing_seal_once_per_open(
    tmp_path: Path, device: DeviceIdentity, owner: age.X25519Identity
) -> None:
    store = ClipStore(tmp_path, device)
    clip_id = write_clip(store, owner, finish=False)  # the power went out while recording
    store.close()
    attempts: list[str] = []

    def failing(seal: ClipSeal) -> None:
        attempts.append(seal.clip_id)
        raise DoorwardError("the audit log is unavailable")

    ClipStore(tmp_path, device, on_sealed=failing).close()
    assert attempts == [clip_id]  # closed and sealed once, not retried at once
