"""SIGKILL the recording process at random moments: after each restart the store is consistent."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity
from crypto.signed import verify_document
from device import ClipStore

_REPO = Path(__file__).resolve().parents[2]
KILLS = 20


def check_consistent(data_dir: Path, owner: age.X25519Identity, device: DeviceIdentity) -> int:
    """Open (and so recover) the store; check every clip, segment and manifest. Segments seen."""
    store = ClipStore(data_dir, device)
    try:
        assert not list(data_dir.rglob("*.tmp"))
        clips = store.list_clips(limit=1000)
        dirs = {p for p in (data_dir / "clips").glob("*/*/*") if p.is_dir()}
        segments = 0
        for clip in clips:
            assert clip.finished
            records = store.list_segments(clip.clip_id)
            assert [s.index for s in records] == list(range(len(records)))
            clip_dir = records[0].path.parent
            dirs.discard(clip_dir)
            assert sorted(p.name for p in clip_dir.iterdir()) == sorted(
                [s.path.name for s in records] + ["manifest.json"]
            )
            body = verify_document(
                json.loads(store.manifest_bytes(clip.clip_id)), device.public_key
            )
            assert [e["payload_sha256"] for e in body["segments"]] == [
                s.payload_sha256 for s in records
            ]
            for seg in records:
                data = seg.path.read_bytes()
                assert len(data) == seg.size
                assert age.payload_sha256(data).hex() == seg.payload_sha256
                age.decrypt_bytes([owner], data)  # raises on any truncated or corrupt chunk
                segments += 1
        assert dirs == set()  # no directory without a clip row
        return segments
    finally:
        store.close()


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_store(tmp_path: Path) -> None:
    owner = age.X25519Identity.generate()
    data_dir = tmp_path / "data"
    rng = random.Random(20261126)
    seen = 0
    for _ in range(KILLS):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.device._record_forever",
                str(data_dir),
                str(owner.recipient()),
            ],
            cwd=_REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.5))  # the kill moment, not a wait for something to happen
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        process.stdout.close()
        device = DeviceIdentity.load(data_dir / "keys" / "device.ed25519")
        segments = check_consistent(data_dir, owner, device)
        assert segments >= seen  # nothing committed earlier was lost
        seen = segments
    assert seen > KILLS  # the runs did record
