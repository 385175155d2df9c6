"""A real device for hub tests: data directory, TLS 1.3 site on 127.0.0.1, clients for its keys."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from consent.audit_verify import AuditVerifier
from crypto.keys import KeyBundle
from hardware.sim import SimulatedCamera, parse_scenario
from hub.client import DoorwardClient
from hub.client.audit import check_audit
from hub.server.app import create_app
from hub.server.config import ServeConfig
from hub.server.deps import CameraInfo
from hub.server.guard import request_limits
from hub.server.live.relay import FrameRelay
from hub.server.routes.live import LiveSetup
from hub.server.state import Device


@dataclass
class Running:
    device: Device
    app: web.Application
    url: str

    def client(self, keys: KeyBundle, *, clock: Callable[[], float] = time.time) -> DoorwardClient:
        return DoorwardClient(
            self.url,
            fingerprint=self.device.fingerprint,
            device_id=self.device.identity.device_id,
            key=keys.signing_key,
            clock=clock,
        )

    def add_owner(self, keys: KeyBundle, name: str = "phone") -> None:
        self.device.owners.add(keys.public(), name=name, now=int(time.time()))


async def audited_seals(
    running: Running, phone: DoorwardClient, owner: KeyBundle, clip_ids: Iterable[str]
) -> dict[str, str]:
    """What ``doorward owner approve`` checks clip manifests against: the phone audits the
    device's log (from the start, in memory) and reads each clip's sealed manifest hash."""
    verifier = AuditVerifier(running.device.identity.public_key, running.device.audit.origin)
    await check_audit(phone, verifier, signing_key=owner.signing_key, now=int(time.time()))
    return verifier.sealed(clip_ids)


@contextlib.asynccontextmanager
async def running_device(
    data_dir: Path,
    *,
    cameras: dict[str, CameraInfo] | None = None,
    config: ServeConfig | None = None,
    clock: Callable[[], float] = time.time,
    live_cameras: tuple[str, ...] = (),
) -> AsyncIterator[Running]:
    """The device's API on an ephemeral port with its own TLS certificate (real TLS 1.3);
    with ``live_cameras``, also the live-view routes, for cameras that send no frames."""
    config = config or ServeConfig(data_dir=data_dir)
    device = Device.open(data_dir, request_limits=config.request_limits())
    live_view = None
    if live_cameras:
        relay = FrameRelay()
        for name in live_cameras:
            relay.add_camera(name)
        live_view = LiveSetup(relay)
    app = create_app(device.deps(cameras or {}, config, clock=clock), live_view=live_view)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **request_limits(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield Running(device, app, f"https://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
        device.close()


def small_camera(
    start_s: float, *, seconds: float = 4.0, press_at_s: float = 0.5
) -> SimulatedCamera:
    """A small, fast simulated camera (virtual time) whose doorbell is pressed once."""
    start = datetime.fromtimestamp(int(start_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (
        f"[camera]\nwidth = 160\nheight = 120\nfps = 10\nseconds = {seconds}\nseed = 3\n"
        f"start = {start}\n\n[[press]]\nat_s = {press_at_s}\n"
    )
    return SimulatedCamera(parse_scenario(text, "small.toml"))
