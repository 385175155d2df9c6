"""``doorward serve`` starts zeroconf before the heavy start-up: the import path stays light, the
pairing state is read from the data directory, and the API's own view is announced once it is up."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto.keys import DeviceIdentity, KeyBundle
from crypto.tls import spki_fingerprint
from hub.server.config import ServeConfig
from hub.server.serve import _follow_pairing, _pairing_state, serve
from hub.server.state import Device
from hub.wire.discovery import Advertiser, DiscoveredDevice, browse

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = ["127.0.0.1"]
HEAVY = (
    "aiohttp",
    "aiortc",
    "av",
    "cv2",
    "matplotlib",
    "numpy",
    "hub.client.api",
    "hub.server.live.webrtc",
)


def _loaded_after(statement: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has loaded after running ``statement``."""
    probe = (
        f"import sys\n{statement}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()[-1].split()[1:]


def test_serve_entry_point_imports_no_heavy_module() -> None:
    assert _loaded_after("import hub.cli.cmd_serve") == []


def test_doorward_serve_command_imports_no_heavy_module() -> None:
    statement = "from hub.cli.main import main; main(['-v', 'serve', '--print-config'])"
    assert _loaded_after(statement) == []


def test_live_routes_load_aiortc_only_on_the_first_offer() -> None:
    assert "aiortc" not in _loaded_after("import hub.server.routes.live")


def test_pairing_state_read_from_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _pairing_state(ServeConfig(data_dir=data)) == "open"  # first start: nothing on disk yet
    device = Device.open(data)
    try:
        assert _pairing_state(ServeConfig(data_dir=data)) == "open"
        device.owners.add(KeyBundle.generate("x25519").public(), name="phone", now=int(time.time()))
        assert _pairing_state(ServeConfig(data_dir=data)) == "closed"
    finally:
        device.close()
    counter = data / "pairing-state.json"
    counter.write_text(json.dumps({"failures": 19}))
    assert _pairing_state(ServeConfig(data_dir=data)) == "closed"
    counter.write_text(json.dumps({"failures": 20}))
    assert _pairing_state(ServeConfig(data_dir=data)) == "locked"
    counter.write_text("{damaged")  # fails closed, as the API does
    assert _pairing_state(ServeConfig(data_dir=data)) == "locked"
    counter.write_text(json.dumps({"failures": -1}))
    assert _pairing_state(ServeConfig(data_dir=data)) == "locked"


class _Desk:
    """The two members of the API's PairingDesk that serve uses."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.on_state: object = None


@pytest.mark.asyncio
@pytest.mark.slow
async def test_api_pairing_state_replaces_the_one_read_at_start() -> None:
    identity = DeviceIdentity.generate()
    record = DiscoveredDevice(
        device_id=identity.device_id,
        name="Porch",
        port=8443,
        pairing="open",
        fingerprint=spki_fingerprint(identity.public_key),
    )
    advertiser = Advertiser(record, interfaces=LOOPBACK)
    starting = asyncio.ensure_future(advertiser.start())
    tasks: set[asyncio.Task[object]] = {starting}
    desk = _Desk("locked")
    try:
        _follow_pairing(advertiser, starting, desk, tasks)
        assert callable(desk.on_state)
        await asyncio.gather(*tasks)
        assert advertiser.device.pairing == "locked"
        found = await browse(20, interfaces=LOOPBACK, until_found=[identity.device_id])
        assert [d.pairing for d in found if d.device_id == identity.device_id] == ["locked"]
    finally:
        await advertiser.close()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_serve_advertises_closed_pairing_and_its_bound_port(tmp_path: Path) -> None:
    scenario = tmp_path / "cam.toml"
    scenario.write_text("[camera]\nwidth = 160\nheight = 120\nfps = 10\nseconds = 60\nseed = 3\n")
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=(f"front=simulated:{scenario}",),
        host="127.0.0.1",
        port=0,
        name="Back door",
    )
    device = Device.open(config.data_dir)
    try:
        device.owners.add(KeyBundle.generate("x25519").public(), name="phone", now=int(time.time()))
        device_id = device.identity.device_id
    finally:
        device.close()
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(
        serve(config, stop=stop, out=io.StringIO(), on_ready=ready.set_result)
    )
    try:
        url = await asyncio.wait_for(ready, 20)
        found = await browse(20, interfaces=LOOPBACK, until_found=[device_id])
        [record] = [d for d in found if d.device_id == device_id]
        assert (record.name, record.pairing, record.port) == (
            "Back door",
            "closed",
            int(url.rsplit(":", 1)[1]),
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 20) == 0
