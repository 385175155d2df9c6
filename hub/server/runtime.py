"""The running device: cameras, pipelines, the API and live view, started and stopped in order.

``doorward serve`` imports this module in a worker thread (see ``hub.server.serve``): it imports
everything heavy the device needs (aiohttp, the pipelines, codecs, the routes), so the event loop
meanwhile sends the zeroconf probes on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import socket
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from consent.models import RequestStatus
from crypto.errors import DoorwardError
from device import CameraPipeline, MotionConfig, PipelineStats, RecorderConfig, detector_for
from hardware import (
    CameraSource,
    DoorbellButton,
    LiveCamera,
    SoftButton,
    TwoStreamCamera,
    button_of,
    microphone_of,
    open_camera,
)
from hub.server import appkeys
from hub.server.app import create_app, create_page_app
from hub.server.chime import CHIME_OFF, Chimes, default_chime, load_chime
from hub.server.config import CameraConfig, ConfigError, ServeConfig
from hub.server.deps import CameraInfo, HubDeps
from hub.server.events import EventBus, device_event
from hub.server.guard import (
    ConnectionGuard,
    GuardedSite,
    GuardLimits,
    connection_capacity,
    open_descriptors,
    raise_descriptor_limit,
    request_limits,
)
from hub.server.live.page_tls import page_tls_context
from hub.server.live.relay import FrameRelay, LiveConfig
from hub.server.pairing import PairingDesk
from hub.server.quietlog import RepeatFilter, limit_repeats
from hub.server.reload import RunningConfig
from hub.server.routes.live import LiveSetup
from hub.server.sound import Sound, SoundError
from hub.server.speakers import Speakers, open_speakers
from hub.server.state import Device
from hub.server.watchdog import HealthProbe

if TYPE_CHECKING:
    from hub.server.backup import OffsiteBackup

__all__ = ["Running", "open_button", "open_device", "running_device"]

logger = logging.getLogger(__name__)

HOLD_TO_UNLOCK_S = 3.0
# Home Assistant's motion sensor turns OFF when the camera's clip ends, or at the latest this long
# (or the post-roll, if longer) after the detector's last rising edge.
MOTION_HOLD_S = 10.0
RETENTION_EVERY_S = 60.0
_OPENERS = 4  # cameras opened at once at start


@dataclass(frozen=True, slots=True)
class Running:
    """A started device: its state, its API app, how many cameras record, and the chime
    (None when ``chime = "off"``)."""

    device: Device
    app: web.Application
    cameras: int
    health: HealthProbe | None = None
    chimes: Chimes | None = None

    @property
    def pairing(self) -> PairingDesk:
        """The API's pairing desk (its state is what zeroconf announces)."""
        return self.app[appkeys.PAIRING]

    @property
    def speakers(self) -> Speakers:
        """The cameras' speakers (``speakers.simulated(camera)`` reads a simulated one)."""
        return self.app[appkeys.SPEAKERS]


def open_device(
    config: ServeConfig, cameras: list[CameraConfig]
) -> tuple[Device, dict[str, CameraSource]]:
    """Open the data directory and the cameras (blocking: run it in a worker thread)."""
    device = Device.open(config.data_dir, request_limits=config.request_limits())

    def one(camera: CameraConfig) -> CameraSource:
        return open_camera(camera.kind, camera.target, name=camera.name, detect=camera.detect)

    try:
        # Opening probes each stream (a tenth of a second for a 1080p file); a box with many
        # cameras opens a few at once, so start-up does not grow with the camera count as much.
        with ThreadPoolExecutor(_OPENERS, thread_name_prefix="camera-open") as pool:
            sources = list(pool.map(one, cameras))
        return device, {
            camera.name: source for camera, source in zip(cameras, sources, strict=True)
        }
    except BaseException:
        device.close()
        raise


def open_button(
    config: ServeConfig, cameras: list[CameraConfig]
) -> tuple[str, DoorbellButton] | None:
    """The GPIO doorbell button of ``[button]`` and the camera it rings, or None (blocking)."""
    spec = config.button
    if spec is None:
        return None
    camera = spec.camera or cameras[0].name
    if camera not in {c.name for c in cameras}:
        raise ConfigError(
            f"button.camera names camera {camera}, which is not configured "
            f"(cameras: {', '.join(c.name for c in cameras)})"
        )
    from hardware.gpio import GpioButton

    return camera, GpioButton(spec).open()


@contextlib.asynccontextmanager
async def running_device(
    config: ServeConfig,
    cameras: list[CameraConfig],
    device: Device,
    sources: dict[str, CameraSource],
    *,
    api: socket.socket,
    page: socket.socket,
    stop: asyncio.Event,
    settings: RunningConfig | None = None,
    button: tuple[str, DoorbellButton] | None = None,
) -> AsyncIterator[Running | None]:
    """Connect the cameras, record with every one, serve the API on ``api`` and the live page's
    site (``hub.server.app.create_page_app``) on ``page``; yields None when ``stop`` came before the cameras answered. On exit every pipeline
    finishes its open segment before the API and the device close. ``settings`` is the config a
    reload replaces (retention and log limits read it); ``button`` a hardware button and the
    camera it rings."""
    settings = settings or RunningConfig(config)
    tasks: set[asyncio.Task[Any]] = set()
    backup: OffsiteBackup | None = None
    runner: web.AppRunner | None = None
    page_runner: web.AppRunner | None = None
    guard: ConnectionGuard | None = None
    chimes: Chimes | None = None
    logs = contextlib.ExitStack()
    stores = contextlib.AsyncExitStack()
    try:
        quiet = logs.enter_context(limit_repeats(_repeat_filter(config)))
        settings.subscribe(lambda new: _update_filter(quiet, new))
        if not await _connect_cameras(sources, stop):
            for source in sources.values():
                await source.close()
            yield None
            return
        pipelines: dict[str, CameraPipeline] = {}
        infos = {
            camera.name: _camera_info(camera, sources[camera.name], pipelines) for camera in cameras
        }
        relay = FrameRelay()  # live view watches the pipelines' frames, never the cameras
        live = LiveSetup(
            relay,
            LiveConfig(
                max_viewers=config.live_max_viewers, max_session_s=config.live_max_session_s
            ),
            page_port=int(page.getsockname()[1]),
        )
        backup = _offsite_backup(config, device, lambda: app)
        deps = device.deps(infos, config, backup=backup)
        if backup is not None:
            deps = await _offsite_releases(deps, backup, device, stores)
        speakers = await asyncio.to_thread(open_speakers, config, cameras, sources)
        app = create_app(deps, live_view=live, speakers=speakers)
        chime = await asyncio.to_thread(_chime_sound, config)
        chimes = Chimes(chime, speakers) if chime is not None else None
        pipelines.update(
            _pipelines(config, device, sources, relay, app, tasks, backup, button, chimes)
        )
        guard = app[appkeys.GUARD] = _connection_guard(config)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, **request_limits(config))
        await runner.setup()
        await GuardedSite(runner, api, guard, ssl_context=device.ssl_context()).start()
        # The page port: its own site with the page's routes only (its certificate is unpinned).
        page_runner = web.AppRunner(
            create_page_app(app), handle_signals=False, access_log=None, **request_limits(config)
        )
        await page_runner.setup()
        page_tls = page_tls_context(device.data_dir / "keys")
        await GuardedSite(page_runner, page, guard, ssl_context=page_tls).start()
        runs = {name: _track(tasks, pipeline.run()) for name, pipeline in pipelines.items()}
        if config.relay is not None:
            relay_device = _relay_device(config, device, api, bus=app[appkeys.BUS])
            if relay_device is not None:
                _track(tasks, relay_device.run())
        if config.homeassistant is not None:
            bridge = _home_assistant(config, device, app, [camera.name for camera in cameras])
            if bridge is not None:
                _track(tasks, bridge.run())
        _track(tasks, _housekeeping(device, settings, app))
        _track(tasks, _summarise_logs(quiet))
        if backup is not None:
            _track(tasks, backup.run())
        health = HealthProbe(
            pipelines,
            runs,
            sources,
            app[appkeys.WORKER],
            owners=device.owners.count,
            connections=lambda: guard.open_connections if guard is not None else 0,
        )
        yield Running(device, app, len(pipelines), health, chimes)
    finally:
        for task in tasks:
            task.cancel()
        # Pipelines close their open clip when cancelled; wait for every one to finish.
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                logger.error("serve.task_failed error=%s", type(result).__name__)
        if backup is not None:
            backup.close()
        if chimes is not None:  # before the app closes the speakers
            await chimes.close()
        if guard is not None:  # no new connections, no handshakes left; then the API's own
            await guard.close()
        if page_runner is not None:
            await page_runner.cleanup()
        if runner is not None:
            await runner.cleanup()
        if button is not None:
            await button[1].close()
        await stores.aclose()
        logs.close()


def _chime_sound(config: ServeConfig) -> Sound | None:
    """The chime of ``config`` (blocking): its file, the built-in one, or None when off. A file
    that has become unreadable since the config was loaded leaves the built-in chime (logged):
    a doorbell starts and records whatever its chime file does."""
    if config.chime == CHIME_OFF:
        return None
    if config.chime:
        try:
            return load_chime(Path(config.chime))
        except (OSError, SoundError) as exc:
            logger.error("chime.default_instead file=%s error=%s", config.chime, exc)
    return default_chime()


def _offsite_backup(
    config: ServeConfig, device: Device, app: Callable[[], web.Application]
) -> OffsiteBackup | None:
    """The uploader to the configured bucket, or None; its events go to the API's bus."""
    if config.backup is None:
        return None
    from hub.server.backup import OffsiteBackup  # the S3 client loads only when configured

    def publish(kind: str, **fields: Any) -> None:
        app()[appkeys.BUS].publish(kind, **fields)

    return OffsiteBackup(
        config.backup,
        data_dir=device.data_dir,
        store=device.store,
        audit=device.audit,
        owners=device.owners,
        device_key=device.identity.private_key,
        retention_days=config.retention_days,
        publish=publish,
    )


async def _offsite_releases(
    deps: HubDeps, backup: OffsiteBackup, device: Device, stores: contextlib.AsyncExitStack
) -> HubDeps:
    """``deps`` with release delivery through the backup's bucket, on a client that lives as long
    as the device runs. Credentials that cannot be read leave releases to the direct download
    (the uploader reports the same error to the owners)."""
    from hub.offsite.s3 import ObjectStore
    from hub.offsite.target import Credentials
    from hub.server.release_offsite import offsite_releases
    from hub.server.segment_links import SegmentLinks

    try:
        credentials = await asyncio.to_thread(Credentials.load, backup.config.credentials_file)
    except DoorwardError as exc:
        logger.error("backup.releases_off error=%s detail=%s", type(exc).__name__, exc)
        return deps
    bucket = await stores.enter_async_context(ObjectStore(backup.address, credentials))
    return replace(
        deps,
        offsite_releases=offsite_releases(device, bucket),
        segment_links=SegmentLinks(bucket, backup.queue),
    )


def _relay_device(
    config: ServeConfig, device: Device, api: socket.socket, *, bus: EventBus | None = None
) -> Any:
    """The relay connection of ``[relay]`` (``hub.relay.device.RelayDevice``), answering through
    the API on ``api`` and, with ``bus``, sending the owners its events; None (logged) if its
    files are unusable: the LAN API serves regardless."""
    from hub.relay.device import RelayDevice, RelayLogin, api_url_of  # aiomqtt only if configured
    from hub.relay.events import RelayEvents

    assert config.relay is not None
    if device.relay_key is None:
        logger.error("relay.off error=NoRelayKey")
        return None
    try:
        login = RelayLogin.from_files(
            config.relay.url,
            config.relay.ca_file,
            config.relay.credentials_file,
            device.identity.device_id,
        )
    except (DoorwardError, OSError, ssl.SSLError) as exc:
        logger.error("relay.off error=%s detail=%s", type(exc).__name__, exc)
        return None
    events = None
    if bus is not None:
        events = RelayEvents(
            device_id=device.identity.device_id,
            source=bus.subscribe,  # every kind, held by no owner: the relay sorts out who gets it
            owners=lambda: [(o.key_id, o.recipient) for o in device.owners.list_owners()],
        )
    return RelayDevice(
        login,
        device_id=device.identity.device_id,
        gateway_key=device.relay_key,
        pq_key=device.relay_pq_key,
        api_url=api_url_of(api.getsockname()),
        fingerprint=device.fingerprint,
        events=events,
    )


def _home_assistant(
    config: ServeConfig, device: Device, app: web.Application, cameras: list[str]
) -> Any:
    """The home broker connection of ``[homeassistant]`` (``hub.relay.homeassistant``), fed by its
    own subscription to the API's event bus; None (logged) if its files are unusable: recording
    and the API go on regardless."""
    # aiomqtt loads only when configured.
    from hub.relay.ha_discovery import WATCHED_KINDS, HomeAssistantNode
    from hub.relay.homeassistant import HomeAssistantBridge, HomeAssistantLogin

    settings = config.homeassistant
    assert settings is not None
    try:
        host, port = settings.address()
        login = HomeAssistantLogin.from_files(
            host,
            port,
            tls=settings.tls,
            username=settings.username,
            password_file=settings.password_file,
            ca_file=settings.ca_file,
        )
    except DoorwardError as exc:
        logger.error("homeassistant.off error=%s detail=%s", type(exc).__name__, exc)
        return None
    device_id = device.identity.device_id
    node = HomeAssistantNode(
        device_id,
        settings.node(device_id),
        config.name,
        _software_version(),
        tuple(cameras),
        prefix=settings.discovery_prefix,
    )
    bus, worker = app[appkeys.BUS], app[appkeys.WORKER]

    async def pending_count() -> int | None:
        try:
            return await worker.run(_pending_requests, device, int(time.time()))
        except sqlite3.Error as exc:
            logger.error("homeassistant.count_failed error=%s", type(exc).__name__)
            return None

    return HomeAssistantBridge(
        login,
        node,
        subscribe=lambda: bus.subscribe(WATCHED_KINDS),
        pending_count=pending_count,
        hold_s=max(MOTION_HOLD_S, config.post_roll_s),
    )


def _pending_requests(device: Device, now: int) -> int:
    """How many requests wait for an owner's decision (run on the API's worker)."""
    pending = device.desk.list_requests(RequestStatus.PENDING)
    return sum(1 for record in pending if record.expires_at_s > now)


def _software_version() -> str:
    try:
        return importlib.metadata.version("doorward")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _connection_guard(config: ServeConfig) -> ConnectionGuard:
    """The guard of the API's connections, its capacity taken from the descriptor limit (lifted
    to the hard limit first) less the descriptors open now and the reserve for recording."""
    limits = GuardLimits.from_config(config)
    descriptor_limit = raise_descriptor_limit()
    open_now = open_descriptors()
    capacity = connection_capacity(limits, descriptor_limit=descriptor_limit, open_now=open_now)
    logger.info(
        "guard.capacity connections=%d per_address=%d descriptor_limit=%d open=%d reserve=%d",
        capacity,
        limits.per_address,
        descriptor_limit,
        open_now,
        limits.descriptor_reserve,
    )
    return ConnectionGuard(limits, capacity=capacity)


def _repeat_filter(config: ServeConfig) -> RepeatFilter:
    return RepeatFilter(limit=config.log_repeats, window_s=config.log_summary_s)


def _update_filter(quiet: RepeatFilter, config: ServeConfig) -> None:
    quiet.limit, quiet.window_s = config.log_repeats, config.log_summary_s


async def _summarise_logs(quiet: RepeatFilter) -> None:
    """Once a window, one line per kind of log line that was held back."""
    while True:
        await asyncio.sleep(quiet.window_s)
        quiet.summarise()


def _pipelines(
    config: ServeConfig,
    device: Device,
    sources: Mapping[str, CameraSource],
    relay: FrameRelay,
    app: web.Application,
    tasks: set[asyncio.Task[Any]],
    backup: OffsiteBackup | None,
    hardware_button: tuple[str, DoorbellButton] | None = None,
    chimes: Chimes | None = None,
) -> dict[str, CameraPipeline]:
    zones, masks = dict(config.privacy_zones), dict(config.motion_masks)
    bus = app[appkeys.BUS]
    speakers = app[appkeys.SPEAKERS]

    def on_event(event: Any) -> None:
        mapped = device_event(event)
        if mapped is not None:
            bus.publish(mapped[0], **mapped[1])
        if backup is not None:
            backup.notice(event)

    recording = RecorderConfig(
        pre_roll_s=config.pre_roll_s,
        post_roll_s=config.post_roll_s,
        segment_s=config.segment_s,
        encoder=config.encoder,
    )
    pipelines = {}
    for name, source in sources.items():
        feeds = [b for b in (button_of(source),) if b is not None]
        if hardware_button is not None and hardware_button[0] == name:
            feeds.append(hardware_button[1])
        button = SoftButton() if feeds else None
        motion = MotionConfig(sensitivity=config.motion_sensitivity, masks=masks.get(name, ()))
        pipelines[name] = CameraPipeline(
            name,
            source,
            device.store,
            device.owners.recipients,
            detector=detector_for(source, motion),
            config=replace(recording, privacy_zones=zones.get(name, ())),
            on_event=on_event,
            on_capture=relay.add_camera(
                name, microphone=microphone_of(source), floor=speakers.floor(name)
            ),
            button=button,
        )
        ring = functools.partial(chimes.ring, name) if chimes is not None else None
        for feed in feeds:
            assert button is not None
            _track(tasks, _relay_button(feed, button, app, ring))
    return pipelines


async def _connect_cameras(sources: Mapping[str, CameraSource], stop: asyncio.Event) -> bool:
    """Wait until every live camera has answered (its size, codec and sound are known only then;
    each retries with backoff meanwhile, logging every attempt), or until ``stop`` (False)."""
    live = [
        source.connect()
        for source in sources.values()
        if isinstance(source, LiveCamera | TwoStreamCamera)
    ]
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


def _camera_info(
    camera: CameraConfig, source: CameraSource, pipelines: Mapping[str, CameraPipeline]
) -> CameraInfo:
    """The camera as the API lists it; its counters are read from its pipeline once it runs."""
    info = source.info

    def stats() -> PipelineStats:
        pipeline = pipelines.get(camera.name)
        return PipelineStats() if pipeline is None else pipeline.stats

    return CameraInfo(
        camera.name,
        camera.display,
        info.width,
        info.height,
        float(info.fps),
        info.codec or "unknown",
        stats=stats,
    )


def _track(tasks: set[asyncio.Task[Any]], coro: Any) -> asyncio.Future[Any]:
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    return task


async def _relay_button(
    button: DoorbellButton,
    relay: SoftButton,
    app: web.Application,
    ring: Callable[[], object] | None = None,
) -> None:
    """Presses ring: the chime starts on the camera's speaker at once (``ring``), and the press
    goes to the pipeline, which emits ``doorbell.pressed`` with its next frame; a long hold
    unlocks pairing."""
    async for event in button.events():
        if event.kind == "press":
            if ring is not None:
                ring()
            relay.press(event.at_s)
        elif event.held_s >= HOLD_TO_UNLOCK_S:
            await app[appkeys.WORKER].run(app[appkeys.PAIRING].unlock)


async def _housekeeping(device: Device, settings: RunningConfig, app: web.Application) -> None:
    """Release expiry and retention, once a minute (with the retention a reload last set)."""
    loop = asyncio.get_running_loop()
    while True:
        now = time.time()
        config = settings.current
        # The desk's connection belongs to the API's worker thread.
        await app[appkeys.WORKER].run(device.desk.expire, int(now))
        await loop.run_in_executor(
            None,
            device.store.apply_retention,
            now,
            config.retention_days * 86400,
            config.max_storage_mb * 1024 * 1024,
        )
        await asyncio.sleep(RETENTION_EVERY_S)
