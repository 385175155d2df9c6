"""A live device for live-view tests: a real-time simulated camera recorded by a real pipeline whose
``on_frame`` feeds the relay, the API with live view installed, on TLS 1.3 at 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiohttp import web

from crypto.keys import KeyBundle
from device import CameraPipeline
from hardware import Frame, SimulatedSpeaker, StreamInfo, microphone_of
from hardware.sim import SimulatedCamera, SimulatedMicrophone, parse_scenario, read_strip
from hub.client import DoorwardClient
from hub.server import appkeys
from hub.server.app import create_app, create_page_app
from hub.server.config import ServeConfig
from hub.server.deps import CameraInfo
from hub.server.live.page_tls import page_tls_context
from hub.server.live.relay import FrameRelay, LiveConfig
from hub.server.routes.live import LiveSetup
from hub.server.speakers import Speakers
from hub.server.state import Device
from hub.wire.live_link import mint_link_token
from tests.hub.attackkit import Doorbell
from tests.hub.attackkit import serving as attack_serving

SCENARIO = """[camera]
width = 320
height = 240
fps = 15
seconds = 600
seed = 5
realtime = true
"""


class CountingSource:
    """A real camera source that counts how often it is opened and how many frames it captured."""

    def __init__(self, camera: SimulatedCamera) -> None:
        self.name = camera.name
        self._camera = camera
        self.opened = 0
        self.captured = 0

    @property
    def info(self) -> StreamInfo:
        return self._camera.info

    async def frames(self) -> AsyncIterator[Frame]:
        self.opened += 1
        async for frame in self._camera.frames():
            self.captured += 1
            yield frame

    async def close(self) -> None:
        await self._camera.close()


@dataclass
class LiveDevice:
    device: Device
    app: web.Application
    url: str
    source: CountingSource
    relay: FrameRelay
    pipeline: CameraPipeline
    microphone: SimulatedMicrophone | None
    speaker: SimulatedSpeaker  # the camera's speaker, in the app's Speakers registry

    def client(self, keys: KeyBundle) -> DoorwardClient:
        return DoorwardClient(
            self.url,
            fingerprint=self.device.fingerprint,
            device_id=self.device.identity.device_id,
            key=keys.signing_key,
            timeout_s=60.0,
        )

    def add_owner(self, keys: KeyBundle, name: str = "phone") -> None:
        self.device.owners.add(keys.public(), name=name, now=int(time.time()))

    async def link_url(self, keys: KeyBundle, camera: str = "front") -> str:
        """A live link the owner ``keys`` minted for ``camera`` (what ``owner live --link``
        prints): the page's URL with its one-use token."""
        token = mint_link_token(
            keys.signing_key,
            device_id=self.device.identity.device_id,
            camera=camera,
            now_s=int(time.time()),
            ttl_s=120,
        )
        async with self.client(keys) as api:
            body = await api._json("POST", "/live/link", body={"token": token})
        return str(body["url"])


@contextlib.asynccontextmanager
async def live_device(
    data_dir: Path,
    *,
    config: LiveConfig | None = None,
    camera: str = "front",
    h264: bool = False,
    audio: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    speaker: bool = True,
) -> AsyncIterator[LiveDevice]:
    """``h264``: the camera has its own encoder (frames carry H.264 packets); ``audio``: it has
    a microphone (a 440 Hz tone); ``speaker``: its simulated speaker is the device's (else the
    device has no speaker for it)."""
    device = Device.open(data_dir)
    scenario = SCENARIO + ("h264 = true\n" if h264 else "") + ("audio = true\n" if audio else "")
    simulated = SimulatedCamera(parse_scenario(scenario, "live.toml"), name=camera)
    source = CountingSource(simulated)
    info = CameraInfo(camera, "simulated", 320, 240, 15.0, "raw")
    relay = FrameRelay()
    # The browser-facing port is bound first, so the links the API mints can name it.
    page = socket.create_server(("127.0.0.1", 0))
    page.setblocking(False)
    live_view = LiveSetup(relay, config or LiveConfig(), page.getsockname()[1], sleep)
    app = create_app(
        device.deps({camera: info}, ServeConfig(data_dir=data_dir)),
        live_view=live_view,
        speakers=Speakers({camera: simulated.speaker if speaker else None}),
    )
    pipeline = CameraPipeline(
        camera,
        source,
        device.store,
        device.owners.recipients,
        on_capture=relay.add_camera(
            camera,
            microphone=microphone_of(simulated),
            floor=app[appkeys.SPEAKERS].floor(camera),
        ),
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    page_runner = web.AppRunner(create_page_app(app), handle_signals=False, access_log=None)
    await page_runner.setup()
    task = asyncio.ensure_future(pipeline.run())
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        # The browser-facing site: the page's routes only, an ECDSA certificate browsers accept.
        page_tls = page_tls_context(data_dir / "keys")
        await web.SockSite(page_runner, page, ssl_context=page_tls).start()
        yield LiveDevice(
            device,
            app,
            f"https://127.0.0.1:{port}",
            source,
            relay,
            pipeline,
            simulated.microphone,
            simulated.speaker,
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await page_runner.cleanup()
        await runner.cleanup()
        page.close()
        device.close()


def strip_counter(picture: av.VideoFrame) -> int | None:
    """The frame counter drawn by the simulated camera, read back from a decoded picture."""
    reading = read_strip(np.asarray(picture.to_ndarray(format="gray"), dtype=np.uint8))
    return None if reading is None else reading.counter


def mono(frame: av.AudioFrame) -> npt.NDArray[np.float64]:
    """The first channel of a decoded audio frame (packed or planar)."""
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        return np.asarray(samples[0], dtype=np.float64)
    return np.asarray(samples.reshape(-1)[:: len(frame.layout.channels)], dtype=np.float64)


def dominant_hz(frames: list[av.AudioFrame]) -> float:
    """The strongest frequency in the sound of ``frames`` (all at one sample rate)."""
    pcm = np.concatenate([mono(f) for f in frames])
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / frames[0].sample_rate)[int(np.argmax(spectrum))])


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *cameras: str, **options: Any) -> AsyncIterator[Doorbell]:
    """``doorward serve`` (the whole command, in this process) with ``cameras`` and the serve
    ``options``, one owner paired; stopped on the way out."""
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=cameras,
        host="127.0.0.1",
        port=0,
        advertise=False,
        **options,
    )
    async with attack_serving(config) as doorbell:
        yield doorbell
