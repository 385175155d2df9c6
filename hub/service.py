"""``doorward serve``: the device itself — identity, clip store, audit log, consent desk, one
recording pipeline per camera, the HTTPS API on TLS 1.3 and the zeroconf advertisement.

:class:`Device` opens (and on first start creates) everything under the data directory::

    keys/device.ed25519   the device's Ed25519 key (0600)      keys/device.crt   its TLS certificate
    keys/setup-code       the 8-digit pairing code (0600)       doorward.db       SQLite (WAL)
    audit.db              the audit log                         clips/…           encrypted segments

:func:`serve` runs until SIGINT/SIGTERM (or ``stop``), then stops the cameras (each finishes its
open segment), the API and the databases, and returns 0. Log lines are ``event key=value`` and
never carry a key, a token or the setup code; the code is printed (with its QR) to ``out`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import signal
import socket
import sqlite3
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crypto.errors import DoorwardError

# Zeroconf probing (RFC 6762 §8.1) takes up to a second, so `serve` starts it before anything
# heavy: this module imports only what that needs, and the API, camera and pipeline modules are
# loaded in a worker thread while the probes go out (see _RUNTIME_MODULES).
if TYPE_CHECKING:
    from aiohttp import web

    from consent.audit import AuditLog
    from consent.desk import ConsentDesk
    from crypto.keys import DeviceIdentity
    from crypto.setup_code import PairingURI, SetupCode
    from device import CameraPipeline, MotionConfig, MotionDetector, PipelineStats, Polygon
    from device.store import ClipStore
    from hardware import SimulatedButton
    from hardware._frames import CameraSource
    from hub.app import CameraInfo, HubDeps
    from hub.discovery import PairingState
    from hub.owners import OwnersTable

__all__ = [
    "EXAMPLE_CONFIG",
    "ConfigError",
    "Device",
    "ServeConfig",
    "load_config",
    "parse_camera",
    "serve",
]

logger = logging.getLogger(__name__)


def _package_dir(name: str) -> Path:
    """Where package ``name`` lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"package {name} is not installed")
    return Path(spec.origin).resolve().parent


# Shipped inside the package so `doorward serve` works from a plain (non-editable) install.
_DEFAULT_SCENARIO = _package_dir("hardware") / "default_scenario.toml"
# What the API, the cameras and the pipelines import: loaded off the event loop (see above).
_RUNTIME_MODULES = (
    "aiohttp.web",
    "consent.audit",
    "consent.desk",
    "crypto.setup_code",
    "crypto.tls",
    "device",
    "device.events",
    "device.harness",
    "hardware",
    "hub.app",
    "hub.events",
    "hub.keys",
    "hub.live",
    "hub.owners",
    "hub._page_tls",
    "hub.routes.events",
    "hub.routes.live",
    "hub.routes.owner",
    "hub.routes.pairing",
    "hub.routes.requester",
)
# The API's pairing failure counter (hub.routes.pairing), read before the API exists.
_PAIRING_STATE_FILE = "pairing-state.json"
_HOLD_TO_UNLOCK_S = 3.0
_RETENTION_EVERY_S = 60.0


EXAMPLE_CONFIG = """\
# doorward serve configuration (TOML). Every option, with its default; flags override.

data_dir = "doorward-data"      # keys, database, audit log and encrypted clips live here
name = "Doorward"               # display name advertised on the LAN (at most 63 bytes)

# One entry per camera: [NAME=]simulated[:SCENARIO] | a video file | v4l2:/dev/videoN | rtsp://...
cameras = ["simulated"]

host = "0.0.0.0"                # address the HTTPS API listens on
port = 8443                     # HTTPS port (0 picks a free one)
advertise = true                # announce _doorward._tcp.local. with zeroconf

pre_roll_s = 5.0                # video kept from before motion or a ring
post_roll_s = 5.0               # recording continues this long after motion stops
motion_sensitivity = 0.5        # 0 (only large, strong motion) to 1 (small, faint motion)
segment_s = 2.0                 # length of each encrypted segment (cut at keyframes)

retention_days = 30.0           # clips older than this are deleted (unless a release holds them)
max_storage_mb = 8192           # oldest clips are deleted past this much video

max_pairing_failures = 20       # then pairing is refused until the doorbell button is held
signature_window_s = 60         # signed requests must be created within this many seconds
rate_per_s = 2.0                # requester and pairing requests per second, per address and key
rate_burst = 20                 # ... with bursts up to this many
live_page_port = 0              # browser live-view page (ECDSA cert); 0: a free port, links carry it
live_max_viewers = 4            # live-view sessions at once (owners and browser links together)
live_max_session_s = 600.0      # a live-view session ends after this long (watch again to go on)

# Privacy zones per camera name: polygons of normalised (x, y) points, blacked out in every frame
# before it is encoded, so they are never recorded nor streamed. A camera with zones is always
# encoded with libx264, even one that delivers H.264 itself (its packets cannot be masked).
[privacy_zones]
# front = [[[0.0, 0.0], [0.35, 0.0], [0.35, 0.5], [0.0, 0.5]]]

# Motion masks per camera name: polygons (as above) where motion is never looked for, such as
# the street beyond the garden or a tree that sways. They are still recorded and streamed.
[motion_masks]
# front = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [0.0, 0.2]]]
"""


class ConfigError(DoorwardError, ValueError):
    """A ``doorward serve`` option is missing, unknown or out of range: fix the file or flag."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every ``doorward serve`` option; the TOML file and the flags fill it (flags win)."""

    data_dir: Path = Path("doorward-data")
    cameras: tuple[str, ...] = ("simulated",)
    name: str = "Doorward"
    host: str = "0.0.0.0"  # noqa: S104 - a doorbell serves its LAN
    port: int = 8443
    advertise: bool = True
    pre_roll_s: float = 5.0
    post_roll_s: float = 5.0
    motion_sensitivity: float = 0.5
    segment_s: float = 2.0
    retention_days: float = 30.0
    max_storage_mb: int = 8192
    max_pairing_failures: int = 20
    signature_window_s: int = 60
    rate_per_s: float = 2.0
    rate_burst: int = 20
    live_page_port: int = 0
    live_max_viewers: int = 4
    live_max_session_s: float = 600.0
    privacy_zones: tuple[tuple[str, tuple[Polygon, ...]], ...] = ()
    motion_masks: tuple[tuple[str, tuple[Polygon, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not 0 <= self.live_page_port < 65536:
            raise ValueError(f"live_page_port must be 0-65535, got {self.live_page_port}")
        if self.live_max_viewers < 1:
            raise ValueError(f"live_max_viewers must be >= 1, got {self.live_max_viewers}")
        if self.live_max_session_s <= 0:
            raise ValueError(f"live_max_session_s must be > 0, got {self.live_max_session_s}")
        if not 0.0 <= self.motion_sensitivity <= 1.0:
            raise ValueError(f"motion_sensitivity must be in [0, 1], got {self.motion_sensitivity}")
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        if self.retention_days <= 0 or self.max_storage_mb <= 0:
            raise ValueError("retention_days and max_storage_mb must be positive")


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Read a TOML config (top-level keys named as :class:`ServeConfig` fields), then apply
    ``overrides`` (flags; None values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name: f for f in fields(ServeConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config option(s): {', '.join(unknown)}; see `doorward serve --help`"
        )
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    if "cameras" in values:
        cams = values["cameras"]
        if isinstance(cams, str) or not all(isinstance(c, str) for c in cams):
            raise ConfigError("cameras must be a list of camera specs")
        values["cameras"] = tuple(cams)
    for option in ("privacy_zones", "motion_masks"):
        if option in values:
            values[option] = _polygons_per_camera(option, values[option])
    try:
        return ServeConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid serve option: {exc}") from exc


def _polygons_per_camera(option: str, table: Any) -> tuple[tuple[str, tuple[Polygon, ...]], ...]:
    """``[privacy_zones]`` or ``[motion_masks]``: camera name → list of polygons, each checked as
    the recorder or the detector will."""
    if not isinstance(table, dict):
        raise ConfigError(f"{option} must be a table: camera name = list of polygons")
    from device import MotionConfig, RecorderConfig

    zones = []
    for camera, polygons in sorted(table.items()):
        try:
            shaped = tuple(tuple((float(x), float(y)) for x, y in polygon) for polygon in polygons)
            if option == "privacy_zones":
                RecorderConfig(privacy_zones=shaped)
            else:
                MotionConfig(masks=shaped)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{option}.{camera}: {exc}; write polygons as [[x, y], …] with x and y "
                "between 0 and 1"
            ) from exc
        zones.append((camera, shaped))
    return tuple(zones)


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A parsed ``--camera`` value: ``[NAME=]simulated[:SCENARIO] | PATH | v4l2:/dev/videoN | rtsp://…``."""

    name: str
    kind: str  # simulated, file, live
    target: str

    def open(self) -> CameraSource:
        from hardware import FileCamera, LiveCamera, SimulatedCamera, load_scenario

        if self.kind == "simulated":
            return SimulatedCamera(load_scenario(self.target), realtime=True, name=self.name)
        if self.kind == "file":
            return FileCamera(self.target, loop=True, realtime=True, name=self.name)
        return LiveCamera(self.target, name=self.name)


def parse_camera(text: str, index: int) -> CameraSpec:
    """Parse one camera spec; unnamed cameras are called ``cam1``, ``cam2``, …"""
    name = f"cam{index + 1}"
    head, sep, rest = text.partition("=")
    if sep and head.replace("-", "").replace("_", "").isalnum() and "://" not in head:
        name, text = head, rest
    if text == "simulated" or text.startswith("simulated:"):
        scenario = text.removeprefix("simulated").removeprefix(":") or str(_DEFAULT_SCENARIO)
        return CameraSpec(name, "simulated", scenario)
    if text.startswith(("v4l2:", "rtsp://", "rtsps://")):
        return CameraSpec(name, "live", text)
    if Path(text).is_file():
        return CameraSpec(name, "file", text)
    raise ConfigError(
        f"camera spec {text!r} is not simulated[:SCENARIO], an existing file, v4l2:/dev/videoN "
        "or rtsp://…"
    )


@dataclass
class Device:
    """The device's durable state under one data directory (see the module docstring)."""

    data_dir: Path
    identity: DeviceIdentity
    store: ClipStore
    audit: AuditLog
    owners: OwnersTable
    desk: ConsentDesk
    cert_path: Path
    key_path: Path
    fingerprint: str
    setup_code: SetupCode = field(repr=False)

    @classmethod
    def open(cls, data_dir: Path, *, clock: Callable[[], float] = time.time) -> Device:
        """Open the data directory, creating identity, certificate and setup code on first start."""
        from consent.audit import AuditLog, audit_origin
        from consent.desk import ConsentDesk
        from crypto.keys import DeviceIdentity, read_secret_file, write_secret_file
        from crypto.setup_code import SetupCode, draw_setup_code
        from crypto.tls import (
            load_certificate,
            make_certificate,
            spki_fingerprint,
            write_certificate,
        )
        from device import ClipStore
        from hub.owners import OwnersTable

        data_dir = Path(data_dir)
        key_dir = data_dir / "keys"
        key_path = key_dir / "device.ed25519"
        identity = DeviceIdentity.load_or_create(key_path)
        cert_path = key_dir / "device.crt"
        if not cert_path.exists():
            cert = make_certificate(
                identity.private_key, identity.device_id, now=datetime.fromtimestamp(clock(), UTC)
            )
            write_certificate(cert_path, cert)
        fingerprint = spki_fingerprint(load_certificate(cert_path))
        if fingerprint != spki_fingerprint(identity.public_key):
            raise ConfigError(f"{cert_path} is for another key; delete it and start again")
        code_path = key_dir / "setup-code"
        if code_path.exists():
            code = SetupCode.parse(read_secret_file(code_path).decode().strip())
        else:
            code = draw_setup_code()
            write_secret_file(code_path, code.digits().encode())
        audit = AuditLog(
            data_dir / "audit.db",
            signer=identity.private_key,
            origin=audit_origin(identity.public_key),
            clock=clock,
        )

        def deleted(clip_id: str, reason: str) -> None:  # retention and disk-full eviction
            audit.append("clip.deleted", clip_id=clip_id, reason=reason)

        store = ClipStore(data_dir, identity, clock=clock, on_deleted=deleted)
        # Release bundles spooled for a download that a crash interrupted (ciphertext only).
        for leftover in (data_dir / "spool").glob("release-*"):
            leftover.unlink()
        owners = OwnersTable(data_dir / "doorward.db")
        desk = ConsentDesk(
            _desk_connection(data_dir / "doorward.db"),
            device=identity,
            clips=store,  # type: ignore[arg-type]  # list_clips has extra keyword options
            audit=audit,
            owners=owners.paired_owners,
        )
        logger.info("device.open device_id=%s data_dir=%s", identity.device_id, data_dir)
        return cls(
            data_dir, identity, store, audit, owners, desk, cert_path, key_path, fingerprint, code
        )

    def ssl_context(self) -> Any:
        from crypto.tls import server_context

        return server_context(self.cert_path, self.key_path)

    def deps(
        self,
        cameras: Mapping[str, CameraInfo],
        config: ServeConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> HubDeps:
        from hub.app import HubDeps

        return HubDeps(
            device=self.identity,
            store=self.store,
            audit=self.audit,
            desk=self.desk,
            owners=self.owners,
            tls_fingerprint=self.fingerprint,
            data_dir=self.data_dir,
            cameras=dict(cameras),
            setup_code=self.setup_code,
            clock=clock,
            name=config.name,
            signature_window_s=config.signature_window_s,
            rate_per_s=config.rate_per_s,
            rate_burst=config.rate_burst,
            max_pairing_failures=config.max_pairing_failures,
        )

    def pairing_uri(self, host: str | None = None, port: int | None = None) -> PairingURI:
        from crypto.setup_code import PairingURI

        return PairingURI(self.identity.device_id, self.setup_code, self.fingerprint, host, port)

    def close(self) -> None:
        self.owners.close()
        self.audit.close()
        self.store.close()
        logger.info("device.closed device_id=%s", self.identity.device_id)


async def serve(
    config: ServeConfig,
    *,
    stop: asyncio.Event | None = None,
    out: IO[str] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Run the device until SIGINT/SIGTERM or ``stop``; returns the exit status (0)."""
    out = out or sys.stdout
    started = time.monotonic()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    specs = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    zones, masks = dict(config.privacy_zones), dict(config.motion_masks)
    for option, named in (("privacy_zones", zones), ("motion_masks", masks)):
        unknown = sorted(set(named) - {spec.name for spec in specs})
        if unknown:
            raise ConfigError(
                f"{option} name camera(s) {', '.join(unknown)} that are not configured "
                f"(cameras: {', '.join(spec.name for spec in specs)})"
            )
    tasks: set[asyncio.Task[Any]] = set()
    device: Device | None = None
    runner: web.AppRunner | None = None
    advertiser: Any = None
    starting: asyncio.Task[None] | None = None
    # Bind first so the advertised port is the one that answers (also with --port 0); clients
    # that connect before the API is up wait in the listen backlog.
    listener = _listen(config.host, config.port)
    try:
        port = int(listener.getsockname()[1])
        if config.advertise:
            advertiser, starting = _advertise(config, port, tasks, started)
        device, sources = await asyncio.to_thread(_open_device, config.data_dir, specs)

        from aiohttp import web

        from device import CameraPipeline, MotionConfig, RecorderConfig
        from hardware import SimulatedButton, SimulatedCamera, microphone_of
        from hub import keys
        from hub._page_tls import page_tls_context
        from hub.app import create_app
        from hub.events import device_event
        from hub.live import FrameRelay, LiveConfig
        from hub.routes import live as live_routes

        if not await _connect_cameras(sources, stop):
            for source in sources.values():
                await source.close()
            return 0
        infos = {
            name: _camera_info(name, spec.kind + ":" + spec.target, source)
            for (name, source), spec in zip(sources.items(), specs, strict=True)
        }
        app = create_app(device.deps(infos, config))
        bus = app[keys.BUS]
        relay = FrameRelay()  # live view watches the pipelines' frames, never the cameras
        limits = LiveConfig(
            max_viewers=config.live_max_viewers, max_session_s=config.live_max_session_s
        )
        page_port = live_routes.install(app, relay, limits)

        def on_event(event: Any) -> None:
            mapped = device_event(event)
            if mapped is not None:
                bus.publish(mapped[0], **mapped[1])

        recording = RecorderConfig(
            pre_roll_s=config.pre_roll_s, post_roll_s=config.post_roll_s, segment_s=config.segment_s
        )
        pipelines = {}
        for name, source in sources.items():
            button = SimulatedButton() if isinstance(source, SimulatedCamera) else None
            pipelines[name] = CameraPipeline(
                name,
                source,
                device.store,
                device.owners.recipients,
                detector=_detector_for(
                    source,
                    MotionConfig(sensitivity=config.motion_sensitivity, masks=masks.get(name, ())),
                ),
                config=replace(recording, privacy_zones=zones.get(name, ())),
                on_event=on_event,
                on_frame=relay.add_camera(name, microphone=microphone_of(source)),
                button=button,
            )
            infos[name] = replace(infos[name], stats=_stats_of(pipelines[name]))
            if button is not None:
                assert isinstance(source, SimulatedCamera)
                _track(tasks, _relay_button(source.button, button, app))
        app[keys.DEPS] = replace(app[keys.DEPS], cameras=infos)

        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        if advertiser is not None and starting is not None:
            _follow_pairing(advertiser, starting, app[keys.PAIRING], tasks)
        site = web.SockSite(runner, listener, ssl_context=device.ssl_context())
        await site.start()
        page_site = web.TCPSite(
            runner,
            config.host,
            config.live_page_port,
            ssl_context=page_tls_context(device.data_dir / "keys"),
        )
        await page_site.start()
        page_port.port = next(
            a[1] for a in runner.addresses if isinstance(a, tuple) and a[1] != port
        )
        for pipeline in pipelines.values():
            _track(tasks, pipeline.run())
        _track(tasks, _housekeeping(device, config, app))
        url = f"https://{_display_host(config.host)}:{port}"
        logger.info(
            "serve.ready url=%s device_id=%s cameras=%d startup_s=%.3f",
            url,
            device.identity.device_id,
            len(pipelines),
            time.monotonic() - started,
        )
        if device.owners.count() == 0:
            _print_pairing(device, _display_host(config.host), port, out)
        print(f"doorward: serving {url} (device {device.identity.device_id})", file=out, flush=True)
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        logger.info("serve.stopping")
    finally:
        for task in tasks:
            task.cancel()
        # Pipelines close their open clip when cancelled; wait for every one to finish.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.error("serve.task_failed error=%s", type(result).__name__)
        if advertiser is not None:
            try:
                await asyncio.wait_for(advertiser.close(), 10.0)
            except (OSError, RuntimeError, TimeoutError) as exc:
                logger.warning("serve.withdraw_failed error=%s", type(exc).__name__)
        if runner is not None:
            await runner.cleanup()
        listener.close()
        if device is not None:
            device.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
    logger.info("serve.stopped")
    return 0


async def _connect_cameras(sources: Mapping[str, CameraSource], stop: asyncio.Event) -> bool:
    """Wait until every live camera has answered (its size, codec and sound are known only then;
    each retries with backoff meanwhile, logging every attempt), or until ``stop`` (False)."""
    from hardware import LiveCamera

    live = [source.connect() for source in sources.values() if isinstance(source, LiveCamera)]
    if not live:
        return True
    connecting = asyncio.ensure_future(asyncio.gather(*live))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        connecting.cancel()
        raise
    finally:
        stopping.cancel()
    if connecting.done():
        connecting.result()  # a camera that gave up raises CameraOpenFailed here
        return True
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await connecting
    return False


def _open_device(data_dir: Path, specs: list[CameraSpec]) -> tuple[Device, dict[str, CameraSource]]:
    """Import the runtime modules, open the data directory and the cameras (run in a worker
    thread: this is most of start-up, and the event loop meanwhile sends the zeroconf probes on
    time)."""
    for name in _RUNTIME_MODULES:
        importlib.import_module(name)
    device = Device.open(data_dir)
    try:
        return device, {spec.name: spec.open() for spec in specs}
    except BaseException:
        device.close()
        raise


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 picks a free port), as aiohttp would bind."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _stats_of(pipeline: CameraPipeline) -> Callable[[], PipelineStats]:
    return lambda: pipeline.stats


def _camera_info(name: str, spec: str, source: CameraSource) -> CameraInfo:
    from hub.app import CameraInfo

    info = source.info
    return CameraInfo(name, spec, info.width, info.height, float(info.fps), info.codec or "unknown")


def _track(tasks: set[asyncio.Task[Any]], coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    tasks.add(task)


async def _relay_button(
    button: SimulatedButton, relay: SimulatedButton, app: web.Application
) -> None:
    """Presses ring (they go to the pipeline); a long hold unlocks pairing."""
    from hub import keys

    async for event in button.events():
        if event.kind == "press":
            relay.press(event.at_s)
        elif event.held_s >= _HOLD_TO_UNLOCK_S:
            await app[keys.WRITES].run(app[keys.PAIRING].unlock)


async def _housekeeping(device: Device, config: ServeConfig, app: web.Application) -> None:
    """Release expiry and retention, once a minute."""
    from hub import keys

    loop = asyncio.get_running_loop()
    while True:
        now = time.time()
        # The desk's connection belongs to the API's write thread.
        await app[keys.WRITES].run(device.desk.expire, int(now))
        await loop.run_in_executor(
            None,
            device.store.apply_retention,
            now,
            config.retention_days * 86400,
            config.max_storage_mb * 1024 * 1024,
        )
        await asyncio.sleep(_RETENTION_EVERY_S)


def _advertise(
    config: ServeConfig, port: int, tasks: set[asyncio.Task[Any]], started: float
) -> tuple[Any, asyncio.Task[None]]:
    """Start advertising in the background, before the rest of start-up: its TXT record needs
    only the device id, TLS fingerprint and pairing state, all read from the data directory."""
    from crypto.keys import DeviceIdentity
    from crypto.signed import b64url
    from hub import discovery

    identity = DeviceIdentity.load_or_create(config.data_dir / "keys" / "device.ed25519")
    record = discovery.DiscoveredDevice(
        device_id=identity.device_id,
        name=config.name,
        port=port,
        pairing=_pairing_state(config.data_dir, config.max_pairing_failures),
        fingerprint=b64url(_spki_sha256(identity.public_key)),
    )
    addresses = _lan_addresses(config.host)
    advertiser = discovery.Advertiser(record, interfaces=addresses, addresses=addresses)

    async def start() -> None:
        await asyncio.wait_for(advertiser.start(), 10.0)
        logger.info("serve.discoverable after_s=%.3f", time.monotonic() - started)

    starting = asyncio.get_running_loop().create_task(start())
    tasks.add(starting)
    return advertiser, starting


def _follow_pairing(
    advertiser: Any, starting: asyncio.Task[None], pairing: Any, tasks: set[asyncio.Task[Any]]
) -> None:
    """Re-announce whenever the API's pairing state changes, and now if it differs from the state
    read at start-up."""
    loop = asyncio.get_running_loop()

    async def reannounce(new_state: Any) -> None:
        await asyncio.shield(starting)
        await advertiser.update(pairing=new_state)

    def schedule(new_state: Any) -> None:
        tasks.add(loop.create_task(reannounce(new_state)))

    # Pairing changes happen on the API's write thread: hop to the loop to re-announce.
    pairing.on_state = lambda new_state: loop.call_soon_threadsafe(schedule, new_state)
    if pairing.state != advertiser.device.pairing:
        schedule(pairing.state)


def _pairing_state(data_dir: Path, max_failures: int) -> PairingState:
    """The pairing state as the API will report it (``PairingDesk.state``), read from the data
    directory before the API exists: locked past ``max_failures`` (or when the counter file is
    damaged), else open until the first owner pairs."""
    try:
        saved = json.loads((data_dir / _PAIRING_STATE_FILE).read_text())
        failures = saved.get("failures") if isinstance(saved, dict) else None
    except FileNotFoundError:
        failures = 0
    except (OSError, ValueError):
        failures = None
    if not isinstance(failures, int) or failures < 0 or failures >= max_failures:
        return "locked"
    db_path = data_dir / "doorward.db"
    if not db_path.exists():
        return "open"
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=10.0)) as db:
            row = db.execute("SELECT COUNT(*) FROM owners WHERE removed_s IS NULL").fetchone()
    except sqlite3.Error:
        return "open"  # no owners table yet; the API's own view is announced once it is up
    return "open" if row[0] == 0 else "closed"


def _spki_sha256(public_key: Any) -> bytes:
    """SHA-256 of the key's SubjectPublicKeyInfo DER: the TLS pin (as ``crypto.tls``, whose
    x509 import is left to the worker thread)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def _lan_addresses(host: str) -> list[str]:
    """The IPv4 address to advertise: the bound one, else the one the default route uses."""
    if host not in ("0.0.0.0", "::", ""):  # noqa: S104
        return [host]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Connecting a UDP socket sends nothing; it only picks the outgoing interface.
        probe.connect(("192.0.2.1", 9))
        return [probe.getsockname()[0]]
    except OSError:
        return ["127.0.0.1"]
    finally:
        probe.close()


def _print_pairing(device: Device, host: str, port: int, out: IO[str]) -> None:
    """The setup code and its QR code, for the person installing the doorbell (never logged)."""
    uri = device.pairing_uri(host, port)
    print("Pair a phone with this doorbell:", file=out)
    print(f"  setup code: {device.setup_code.display()}", file=out)
    try:
        import segno

        qr = segno.make(uri.to_uri(), error="m")
        qr.terminal(out=out, compact=True)  # type: ignore[arg-type]
    except (ImportError, ValueError) as exc:
        logger.warning("serve.qr_unavailable error=%s", type(exc).__name__)
    print(f"  pairing URI: {uri.to_uri()}", file=out, flush=True)


def _display_host(host: str) -> str:
    """Where a client on this machine reaches the API (a wildcard address means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def _desk_connection(path: Path) -> Any:
    # Default isolation level: the desk groups its writes with ``with db:`` transactions.
    # Used from the API's single write thread only.
    db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def _detector_for(source: CameraSource, config: MotionConfig) -> MotionDetector:
    """The camera's detector with the configured sensitivity and masks. A simulated camera draws
    a frame-counter strip that changes every frame: that is masked out too."""
    from device import MotionDetector
    from device.harness import detector_for
    from hardware import SimulatedCamera

    if isinstance(source, SimulatedCamera):
        return detector_for(source.scenario, config)
    info = source.info
    return MotionDetector(config, info.width, info.height)
