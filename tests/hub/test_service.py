"""``doorward serve``: first start prints the code and QR, a phone pairs over the printed URI, the
camera records to the new owner, and SIGTERM (or stop) finishes the open segment and exits 0."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from crypto.setup_code import PairingURI
from crypto.tls import spki_fingerprint
from device import ClipStore
from hardware import ScenarioError
from hub.client import DoorwardClient, pair
from hub.server.config import EXAMPLE_CONFIG, ConfigError, ServeConfig, load_config, parse_camera
from hub.server.serve import serve
from hub.server.state import Device

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
SCENARIO = """[camera]
width = 160
height = 120
fps = 10
seconds = 120
seed = 3

[[press]]
at_s = 0.5
"""


def _config(tmp_path: Path) -> ServeConfig:
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO)
    return ServeConfig(
        data_dir=tmp_path / "data",
        cameras=(f"front=simulated:{scenario}",),
        host="127.0.0.1",
        port=0,
        advertise=False,
        pre_roll_s=1.0,
        post_roll_s=1.0,
        segment_s=1.0,
    )


def _pairing_uri(text: str) -> PairingURI:
    line = next(t for t in text.splitlines() if t.strip().startswith("pairing URI:"))
    return PairingURI.parse(line.split("pairing URI:", 1)[1].strip())


@pytest.mark.asyncio
async def test_serve_pairs_records_and_stops_cleanly(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = io.StringIO()
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(serve(config, stop=stop, out=out, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 20)
    printed = out.getvalue()
    assert "setup code: " in printed
    assert "█" in printed  # the QR code, drawn in the terminal
    uri = _pairing_uri(printed)
    assert (uri.host, uri.port) == ("127.0.0.1", int(url.rsplit(":", 1)[1]))

    phone = KeyBundle.generate("x25519")
    device_keys = await pair(url, uri, phone, name="Ada's phone")
    assert device_keys.device_id == uri.device_id
    async with DoorwardClient(
        url, fingerprint=uri.fingerprint, device_id=uri.device_id, key=phone.signing_key
    ) as api:
        [owner] = await api.owners()
        assert (owner.key_id, owner.admin, owner.name) == (phone.key_id, True, "Ada's phone")
        assert [c.name for c in await api.cameras()] == ["front"]
        async for event in api.events(("clip.started",)):
            assert event.data["camera"] == "front"
            break
    stop.set()
    assert await asyncio.wait_for(server, 20) == 0

    # The clip open at shutdown was closed, and every segment decrypts with the phone's key.
    device = Device.open(config.data_dir)
    try:
        store: ClipStore = device.store
        clips = store.list_clips()
        assert clips
        assert all(c.finished for c in clips)
        for clip in clips:
            for segment in store.list_segments(clip.clip_id):
                plaintext = age.decrypt_bytes([phone.age_identity], segment.path.read_bytes())
                assert plaintext[:1] == b"\x47"  # MPEG-TS sync byte
    finally:
        device.close()


@pytest.mark.slow
def test_sigterm_exits_zero_and_keeps_the_identity(tmp_path: Path) -> None:
    config = _config(tmp_path)
    command = [
        sys.executable,
        "-m",
        "hub.cli.cmd_serve",
        "--data",
        str(config.data_dir),
        "--camera",
        config.cameras[0],
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-advertise",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(2):
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("doorward: serving "):
                break
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "serve.stopped" in err
        code = (config.data_dir / "keys" / "setup-code").read_text()
        # Structured logs never carry the setup code.
        assert code not in err
    assert (config.data_dir / "keys" / "device.ed25519").stat().st_mode & 0o077 == 0


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text('name = "Front door"\nport = 9443\ncameras = ["simulated"]\n')
    config = load_config(path, {"port": 8444, "name": None})
    assert (config.name, config.port, config.cameras) == ("Front door", 8444, ("simulated",))
    path.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match=r"^unknown config option\(s\): colour; "):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"^invalid serve option: port must be 0-65535, got 70000$"
    ):
        load_config(None, {"port": 70000})


def test_example_config_documents_every_option_with_its_default(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(EXAMPLE_CONFIG)
    assert load_config(path) == ServeConfig()
    documented = {
        line.split("=")[0].strip()
        for line in EXAMPLE_CONFIG.splitlines()
        if "=" in line and not line.startswith(("#", "["))
    } | {line.strip("[]") for line in EXAMPLE_CONFIG.splitlines() if line.startswith("[")}
    assert documented == {f.name for f in fields(ServeConfig)}


def test_camera_specs(tmp_path: Path) -> None:
    video = tmp_path / "door.mp4"
    video.write_bytes(b"")
    assert parse_camera("simulated", 0).name == "cam1"
    assert parse_camera("porch=simulated:x.toml", 1).target == "x.toml"
    assert parse_camera("v4l2:/dev/video0", 0).kind == "live"
    assert parse_camera("rtsp://cam.local/stream", 0).kind == "live"
    assert parse_camera(str(video), 0).kind == "file"
    with pytest.raises(ConfigError, match=r"^camera spec 'nothing' is not simulated\[:SCENARIO\]"):
        parse_camera("nothing", 0)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_serve_is_discoverable_with_its_txt_records(tmp_path: Path) -> None:
    from dataclasses import replace

    from hub.wire.discovery import browse

    config = replace(_config(tmp_path), advertise=True, name="Front door")
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(
        serve(config, stop=stop, out=io.StringIO(), on_ready=ready.set_result)
    )
    try:
        url = await asyncio.wait_for(ready, 20)
        # Read the identity from its files: opening the live store a second time would not do.
        identity = DeviceIdentity.load(config.data_dir / "keys" / "device.ed25519")
        device_id, fingerprint = identity.device_id, spki_fingerprint(identity.public_key)
        found = await browse(20, interfaces=["127.0.0.1"], until_found=[device_id])
        [record] = [d for d in found if d.device_id == device_id]
        assert (record.name, record.port, record.pairing, record.fingerprint) == (
            "Front door",
            int(url.rsplit(":", 1)[1]),
            "open",
            fingerprint,
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 20) == 0


@pytest.mark.asyncio
async def test_a_camera_that_cannot_open_stops_start_up_and_closes_the_device(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[camera]\nwidth = "wide"\n')
    config = replace(config, cameras=(*config.cameras, f"back=simulated:{bad}"))
    caplog.set_level(logging.INFO, logger="hub.server.state")
    with pytest.raises(ScenarioError) as caught:
        await serve(config, out=io.StringIO())
    assert str(caught.value) == (
        f"{bad} line 2: [camera] width must be an even integer from 160 to 3840, got 'wide'"
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "hub.server.state"]
    device_id = DeviceIdentity.load(config.data_dir / "keys" / "device.ed25519").device_id
    assert f"device.closed device_id={device_id}" in messages
    assert not any(m.startswith("serve.ready") for m in messages)


@pytest.mark.asyncio
async def test_a_live_camera_that_does_not_answer_is_awaited_until_stopped(
    tmp_path: Path,
) -> None:
    # Its size, codec and sound are known only once it answers; until then serve waits (the
    # camera retrying with backoff), and a stop meanwhile ends serve cleanly.
    config = replace(_config(tmp_path), cameras=("door=v4l2:/dev/doorward-missing-video",))
    stop = asyncio.Event()
    stop.set()
    out = io.StringIO()
    status = await asyncio.wait_for(serve(config, stop=stop, out=out), 30)
    assert status == 0
    assert "serving" not in out.getvalue()  # it never got as far as answering


def test_two_stream_camera_specs(tmp_path: Path) -> None:
    main, sub = tmp_path / "main.ts", tmp_path / "sub.ts"
    main.write_bytes(b"")
    sub.write_bytes(b"")
    camera = parse_camera("garden=rtsp://cam/main detect=rtsp://cam/sub", 0)
    assert (camera.name, camera.kind, camera.target) == ("garden", "live", "rtsp://cam/main")
    assert camera.detect == ("live", "rtsp://cam/sub")
    assert parse_camera(f"record={main} detect={sub}", 1).detect == ("file", str(sub))
    assert parse_camera("rtsp://cam/main", 0).detect is None  # one stream: as before
    with pytest.raises(ConfigError, match=r"^camera garden: 'sub=x' is not understood"):
        parse_camera("garden=rtsp://cam/main sub=x", 0)
    with pytest.raises(ConfigError, match=r"^camera porch: a simulated camera makes its own"):
        parse_camera("porch=simulated detect=rtsp://cam/sub", 0)
    with pytest.raises(ConfigError, match=r"a V4L2 camera has one stream: drop detect="):
        parse_camera("door=v4l2:/dev/video0 detect=rtsp://cam/sub", 0)


def test_two_stream_cameras_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(
        'cameras = ["front=rtsp://a/main detect=rtsp://a/sub",\n'
        '  { name = "garden", record = "rtsp://b/main", detect = "rtsp://b/sub" }]\n'
    )
    config = load_config(path)
    assert config.cameras == (
        "front=rtsp://a/main detect=rtsp://a/sub",
        "garden=rtsp://b/main detect=rtsp://b/sub",
    )
    assert parse_camera(config.cameras[1], 1).detect == ("live", "rtsp://b/sub")
    path.write_text('cameras = [{ name = "garden", main = "rtsp://b/main" }]\n')
    with pytest.raises(ConfigError, match=r"^a camera table needs record .*unknown key\(s\): main"):
        load_config(path)


@pytest.mark.asyncio
async def test_serve_records_a_two_stream_camera(tmp_path: Path) -> None:
    from tests.hardware._media import rendered, write_video

    main, sub = tmp_path / "main.ts", tmp_path / "sub.ts"
    write_video(main, rendered(45, 320, 240))  # a person walks through the picture
    write_video(sub, rendered(45, 160, 120))
    config = replace(_config(tmp_path), cameras=(f"garden={main} detect={sub}",))
    phone = KeyBundle.generate("x25519")
    device = Device.open(config.data_dir)
    try:
        device.owners.add(phone.public(), name="Ada's phone", now=int(time.time()))
        device_id, fingerprint = device.identity.device_id, device.fingerprint
    finally:
        device.close()
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(
        serve(config, stop=stop, out=io.StringIO(), on_ready=ready.set_result)
    )
    try:
        url = await asyncio.wait_for(ready, 20)
        async with DoorwardClient(
            url, fingerprint=fingerprint, device_id=device_id, key=phone.signing_key
        ) as api:
            [camera] = await api.cameras()
            # The record stream's size is what the clips hold; motion ran on the substream.
            assert (camera.name, camera.width, camera.height, camera.codec) == (
                "garden",
                320,
                240,
                "h264",
            )
            async for event in api.events(("clip.started",)):
                assert event.data["camera"] == "garden"
                break
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 20) == 0
