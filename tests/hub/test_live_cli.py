"""``doorward owner live --seconds N --out FILE`` records received video and sound to MP4, and
``doorward owner live-link`` prints a link the device accepts once; both as real processes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import av
import pytest

from crypto.keys import KeyBundle
from hub.client.profile import PinnedDevice, Profile
from tests.hub.test_live_kit import LiveDevice, dominant_hz, live_device

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(90)]


def _profile(tmp_path: Path, live: LiveDevice) -> tuple[Path, KeyBundle]:
    keys = KeyBundle.generate("x25519")
    profile = Profile(tmp_path / "profile", "owner")
    profile.create(keys, {"name": "cli"})
    profile.pin(
        PinnedDevice(live.device.identity.device_id, live.device.fingerprint, live.url, "door")
    )
    live.add_owner(keys, "cli")
    return profile.directory, keys


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli.cmd_owner_live",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 75)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_live_records_what_it_received(tmp_path: Path) -> None:
    async with live_device(tmp_path / "data", audio=True) as live:
        profile, _ = _profile(tmp_path, live)
        out = tmp_path / "door.mp4"
        status, stdout, stderr = await _cli(
            "live", "--profile", str(profile), "--seconds", "2", "--out", str(out), "--json"
        )
        assert (status, stderr) == (0, "")
        result = json.loads(stdout)
        assert result["frames"] > 0
        assert result["audio_frames"] > 0
        assert result["out"] == str(out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
    assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert decoded > 0
    with av.open(str(out)) as container:
        sound = list(container.decode(container.streams.audio[0]))
    # The recorded sound is the camera's tone (past the first frames, where the decoder warms up).
    assert dominant_hz(sound[10:]) == pytest.approx(440.0, abs=2.0)


async def test_live_link_prints_a_link_the_device_accepts_once(tmp_path: Path) -> None:
    async with live_device(tmp_path / "data") as live:
        profile, _ = _profile(tmp_path, live)
        status, stdout, stderr = await _cli(
            "live-link", "--profile", str(profile), "--ttl", "60", "--json"
        )
        assert (status, stderr) == (0, "")
        link = json.loads(stdout)
        assert "/live/page?t=" in link["url"]
        status, _, stderr = await _cli("live-link", "--profile", str(profile), "--ttl", "3600")
        assert (status, stderr) == (1, "doorward: error: --ttl must be at most 900 s, got 3600\n")
        status, _, stderr = await _cli("live", "--profile", str(profile), "--out", "x.avi")
        assert (status, stderr) == (1, "doorward: error: --out must name an .mp4 file, got x.avi\n")
