"""The device's data folder and the phone's profile folder are their owner's alone: created 0700
(an existing folder that others may open is narrowed, and the log says so), and ``serve`` creates
every file under a 077 umask, so databases, WAL files, keys and clips are never group/other
readable."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from crypto.setup_code import PairingURI
from hub.client import DoorwardClient, pair
from hub.client.profile import PinnedDevice, Profile
from hub.server.config import ServeConfig
from hub.server.serve import serve
from hub.server.state import Device

pytestmark = pytest.mark.timeout(60)

SCENARIO = """[camera]
width = 160
height = 120
fps = 10
seconds = 120
seed = 3

[[press]]
at_s = 2.0
"""


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with the usual permissive umask, whatever the test runner's is."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that group or others may read or open."""
    paths = [root, *root.rglob("*")]
    return [
        f"{p.relative_to(root.parent)} {stat.S_IMODE(p.lstat().st_mode):04o}"
        for p in paths
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_serve_creates_a_private_data_folder(tmp_path: Path) -> None:
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO)
    data = tmp_path / "data"
    config = ServeConfig(
        data_dir=data,
        cameras=(f"front=simulated:{scenario}",),
        host="127.0.0.1",
        port=0,
        advertise=False,
        pre_roll_s=1.0,
        post_roll_s=1.0,
        segment_s=1.0,
    )
    out = io.StringIO()
    stop = asyncio.Event()
    with umask(0o022):
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.ensure_future(serve(config, stop=stop, out=out, on_ready=ready.set_result))
        try:
            url = await asyncio.wait_for(ready, 20)
            line = next(t for t in out.getvalue().splitlines() if "pairing URI:" in t)
            uri = PairingURI.parse(line.split("pairing URI:", 1)[1].strip())
            phone = KeyBundle.generate("x25519")
            await pair(url, uri, phone, name="phone")
            api = DoorwardClient(
                url, fingerprint=uri.fingerprint, device_id=uri.device_id, key=phone.signing_key
            )
            async with api:
                # A recorded clip: segment files, its folders and its manifest exist too.
                async for _ in api.events(("clip.finished",)):
                    break
            assert list(data.rglob("*.age"))
            assert _mode(data) == 0o700
            assert _open_to_others(data) == []
        finally:
            stop.set()
            assert await asyncio.wait_for(server, 30) == 0
        assert _open_to_others(data) == []
        # serve gives the process its umask back when it returns.
        assert os.umask(0o022) == 0o022


def test_an_existing_open_data_folder_is_narrowed_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    with umask(0o022):
        data.mkdir(mode=0o755)
        (data / "keys").mkdir(mode=0o755)
        caplog.set_level(logging.INFO)
        device = Device.open(data)
        device.close()
    assert (_mode(data), _mode(data / "keys")) == (0o700, 0o700)
    narrowed = [r.getMessage() for r in caplog.records if "narrowed" in r.getMessage()]
    assert narrowed == [
        f"data_dir.narrowed path={data} old_mode=0755 new_mode=0700",
        f"data_dir.narrowed path={data / 'keys'} old_mode=0755 new_mode=0700",
    ]


def test_device_open_creates_its_folder_private(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with umask(0o022):
        Device.open(data).close()
    assert _mode(data) == 0o700
    assert _mode(data / "keys") == 0o700


def test_profile_folders_are_private(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    with umask(0o022):
        existing.mkdir(mode=0o755)
        caplog.set_level(logging.INFO)
        for directory in (fresh, existing):
            profile = Profile(directory, "owner")
            profile.create(KeyBundle.generate("x25519"), {"name": "phone"})
            profile.pin(PinnedDevice("dev", "fp", "https://127.0.0.1:1"))
            profile.checkpoint_path("dev")  # makes the audit folder
    for directory in (fresh, existing):
        assert _mode(directory) == 0o700
        assert _open_to_others(directory) == [], directory
    assert [r.getMessage() for r in caplog.records if "narrowed" in r.getMessage()] == [
        f"profile.narrowed path={existing} old_mode=0755 new_mode=0700"
    ]
