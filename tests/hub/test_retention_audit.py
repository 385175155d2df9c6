"""Clips the doorbell deletes on its own (retention, a full disk) and clips it finishes (sealed)
land in the audit log."""

from __future__ import annotations

import hashlib
from pathlib import Path

from crypto import age
from hub.server.state import Device
from tests.device.kit import T0, write_clip


def test_retention_deletions_are_audited(tmp_path: Path) -> None:
    device = Device.open(tmp_path / "data", clock=lambda: T0 + 10_000)
    try:
        owner = age.X25519Identity.generate()
        old = write_clip(device.store, owner, start_s=T0)
        kept = write_clip(device.store, owner, start_s=T0 + 9_000)
        assert device.store.apply_retention(T0 + 10_000, max_age_s=3_000, max_bytes=10**9) == [old]
        bodies = [e.body() for e in device.audit.entries()]
        deleted = [b for b in bodies if b["kind"] == "clip.deleted"]
        assert [(b["clip_id"], b["reason"]) for b in deleted] == [(old, "retention_age")]
        assert [c.clip_id for c in device.store.list_clips()] == [kept]
    finally:
        device.close()


def test_finished_clips_are_sealed_in_the_audit_log(tmp_path: Path) -> None:
    device = Device.open(tmp_path / "data", clock=lambda: T0 + 10_000)
    try:
        owner = age.X25519Identity.generate()
        clip_id = write_clip(device.store, owner, segments=3)
        write_clip(device.store, owner, start_s=T0 + 100, finish=False)
        sealed = [e.body() for e in device.audit.entries() if e.body()["kind"] == "clip.sealed"]
        digest = hashlib.sha256(device.store.manifest_bytes(clip_id)).hexdigest()
        assert [
            (b["clip_id"], b["camera"], b["segment_count"], b["manifest_sha256"]) for b in sealed
        ] == [(clip_id, "front", 3, digest)]
    finally:
        device.close()
