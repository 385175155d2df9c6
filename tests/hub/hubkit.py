"""A real device for hub tests: data directory, TLS 1.3 site on 127.0.0.1, clients for its keys."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from consent.audit_verify import AuditVerifier
from consent.models import RequesterIdentity
from consent.requests import sign_request
from crypto.keys import KeyBundle
from hardware.sim import SimulatedCamera, parse_scenario
from hub.cli import cmd_owner
from hub.client import DoorwardClient
from hub.client.audit import check_audit
from hub.client.profile import PinnedDevice, Profile
from hub.server.app import create_app
from hub.server.config import ServeConfig
from hub.server.deps import CameraInfo
from hub.server.guard import request_limits
from hub.server.live.relay import FrameRelay
from hub.server.routes.live import LiveSetup
from hub.server.speakers import Speakers
from hub.server.state import Device
from tests.device.kit import write_clip

if TYPE_CHECKING:
    from hub.server.backup import OffsiteBackup
    from hub.server.release_offsite import OffsiteReleases
    from hub.server.segment_links import SegmentLinks


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
    offsite: Callable[[Device], OffsiteReleases] | None = None,
    backup: Callable[[Device], OffsiteBackup] | None = None,
    segment_links: Callable[[OffsiteBackup], SegmentLinks] | None = None,
    speakers: Speakers | None = None,
) -> AsyncIterator[Running]:
    """The device's API on an ephemeral port with its own TLS certificate (real TLS 1.3);
    with ``live_cameras``, also the live-view routes, for cameras that send no frames; with
    ``offsite``, release bundles go to the store of the uploader it makes; with ``backup``, the
    off-site uploader it makes runs (and ``GET /backup`` reports it); with ``segment_links`` too,
    owners who prefer it are sent to the uploaded segments in the store; with ``speakers``, the
    cameras' speakers (the app closes them)."""
    config = config or ServeConfig(data_dir=data_dir)
    device = Device.open(data_dir, request_limits=config.request_limits())
    live_view = None
    if live_cameras:
        relay = FrameRelay()
        for name in live_cameras:
            relay.add_camera(name)
        live_view = LiveSetup(relay)
    uploader = backup(device) if backup is not None else None
    deps = device.deps(cameras or {}, config, clock=clock, backup=uploader)
    if offsite is not None:
        deps = dataclasses.replace(deps, offsite_releases=offsite(device))
    if segment_links is not None and uploader is not None:
        deps = dataclasses.replace(deps, segment_links=segment_links(uploader))
    app = create_app(deps, live_view=live_view, speakers=speakers)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **request_limits(config))
    await runner.setup()
    uploading = asyncio.ensure_future(uploader.run()) if uploader is not None else None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield Running(device, app, f"https://127.0.0.1:{port}")
    finally:
        if uploading is not None:
            uploading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await uploading
        await runner.cleanup()
        if uploader is not None:
            uploader.close()
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


def write_big_clip(
    running: Running, owner: KeyBundle, *, segments: int = 4, finish: bool = True
) -> tuple[str, list[bytes]]:
    """A clip ten minutes old in the device's store, encrypted to ``owner``, of ``segments``
    random segments, the even ones longer than one 64 KiB STREAM chunk; finished unless
    ``finish`` is false. Returns the clip id and the segments' plaintexts."""
    plaintexts = [os.urandom(3000 if index % 2 else 150_000) for index in range(segments)]
    clip_id = write_clip(
        running.device.store,
        owner.age_identity,
        start_s=time.time() - 600,
        payloads=plaintexts,
        finish=finish,
    )
    return clip_id, plaintexts


def request_token(
    requester: KeyBundle,
    *,
    window: tuple[int, int] | None = None,
    contact: str = "",
    kind: str = "local_agency",
) -> str:
    """A signed request from Officer Ada for camera "front", issued now and valid for a day,
    for ``window`` (start, end) in seconds (the last hour by default)."""
    now = int(time.time())
    window_start_s, window_end_s = window or (now - 3600, now)
    return sign_request(
        requester.signing_key,
        str(requester.recipient),
        RequesterIdentity("Officer Ada", "Springfield PD", kind, "Springfield", contact),
        camera="front",
        window_start_s=window_start_s,
        window_end_s=window_end_s,
        category="package_theft",
        case_reference="CASE-2026-17",
        reason="A parcel was taken from the porch.",
        legal_basis="voluntary",
        issued_at_s=now,
        expires_at_s=now + 86400,
        nonce=secrets.token_urlsafe(16),
    )


def owner_profile(running: Running, owner: KeyBundle, directory: Path) -> Profile:
    """The owner's phone profile in ``directory``, pinned to the running device."""
    profile = Profile(directory, "owner")
    profile.create(owner, {"name": "Ada's phone"})
    identity = running.device.identity
    profile.pin(
        PinnedDevice(
            identity.device_id, running.device.fingerprint, running.url, "door", identity.public_key
        )
    )
    return profile


def run_owner_cli(argv: list[str]) -> tuple[int, str, str]:
    """``doorward owner ARGV`` in this process: the exit code, stdout and stderr (run it in a
    thread so that the device's loop keeps serving meanwhile)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cmd_owner.main(argv)
    return code, out.getvalue(), err.getvalue()
