"""``doorward serve``: the device itself, from start to a clean stop.

Start-up order matters for how soon phones see the doorbell: :func:`serve` binds the API's port,
starts the zeroconf advertisement (its record needs only the device id, TLS pin and pairing state,
read from the data directory) and, while the probes go out (RFC 6762 §8.1), imports
:mod:`hub.server.runtime` and opens the device and its cameras in a worker thread. Then the cameras
record, the API listens and the setup code is printed.

:func:`serve` runs until SIGINT/SIGTERM (or ``stop``), then stops the cameras (each finishes its
open segment), the API and the databases, and returns 0. Under systemd (``$NOTIFY_SOCKET``) it
speaks sd_notify through :mod:`hub.server.watchdog`: READY once every camera records, STATUS,
WATCHDOG pings tied to recording, RELOADING on SIGHUP (``reload`` re-reads the config; see
:mod:`hub.server.reload` for what applies without a restart) and STOPPING. Log lines are ``event key=value`` and
never carry a key, a token or the setup code; the code is printed (with its QR) to ``out`` only.
While it runs, the process's umask is 077 (``hub.server.data_dir``): the data folder is private.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import segno

from crypto.keys import DeviceIdentity
from crypto.tls import spki_fingerprint
from hub.server.config import CameraConfig, ConfigError, ServeConfig, parse_camera
from hub.server.data_dir import PRIVATE_UMASK, prepare_data_dir
from hub.server.owners import OwnersTable
from hub.server.pairing_state import PairingAttempts, PairingState, pairing_state
from hub.server.sdnotify import Notifier, under_journal, watchdog_usec
from hub.wire import discovery

if TYPE_CHECKING:
    from hub.server.pairing import PairingDesk
    from hub.server.reload import RunningConfig
    from hub.server.runtime import Running
    from hub.server.state import Device
    from hub.server.watchdog import Supervisor

__all__ = ["serve"]

logger = logging.getLogger(__name__)


async def serve(
    config: ServeConfig,
    *,
    stop: asyncio.Event | None = None,
    out: IO[str] | None = None,
    on_ready: Callable[[str], None] | None = None,
    reload: Callable[[], ServeConfig] | None = None,
    notifier: Notifier | None = None,
    on_running: Callable[[Running], None] | None = None,
) -> int:
    """Run the device until SIGINT/SIGTERM or ``stop``; returns the exit status (0). SIGHUP calls
    ``reload`` (in a thread) for the config to apply; ``notifier`` defaults to ``$NOTIFY_SOCKET``'s.
    ``on_ready`` gets the API's URL once it answers, ``on_running`` the running device (its app,
    its speakers) just before."""
    out = out or sys.stdout
    started = time.monotonic()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    notifier = notifier or Notifier.from_environ()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Until the device runs, a reload has nothing to reload (and must not kill it).
        loop.add_signal_handler(
            signal.SIGHUP, lambda: logger.info("serve.reload_ignored reason=starting")
        )
    cameras = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    _check_camera_names(config, cameras)
    tasks: set[asyncio.Task[Any]] = set()
    advertiser: discovery.Advertiser | None = None
    device: Device | None = None
    # Bind first so the advertised port is the one that answers (also with --port 0); clients
    # that connect before the API is up wait in the listen backlog. The live page's port is
    # bound now too, so the links the API mints can name it.
    listener = _listen(config.host, config.port)
    page_listener = _listen(config.host, config.live_page_port)
    umask = os.umask(PRIVATE_UMASK)  # every file serve creates is the device user's alone
    try:
        prepare_data_dir(config.data_dir)
        port = int(listener.getsockname()[1])
        starting = None
        if config.advertise:
            advertiser, starting = _advertise(config, port, tasks, started)
        runtime = await asyncio.to_thread(importlib.import_module, "hub.server.runtime")
        button = await asyncio.to_thread(runtime.open_button, config, cameras)
        device, sources = await asyncio.to_thread(runtime.open_device, config, cameras)
        settings = _running_config(config)
        async with runtime.running_device(
            config,
            cameras,
            device,
            sources,
            api=listener,
            page=page_listener,
            stop=stop,
            settings=settings,
            button=button,
        ) as running:
            if running is None:
                return 0
            supervisor = _supervise(running, settings, notifier, tasks)
            if reload is not None:
                _on_sighup(loop, reload, settings, supervisor, tasks)
            if advertiser is not None and starting is not None:
                _follow_pairing(advertiser, starting, running.pairing, tasks)
            url = f"https://{_display_host(config.host)}:{port}"
            logger.info(
                "serve.ready url=%s device_id=%s cameras=%d startup_s=%.3f",
                url,
                device.identity.device_id,
                running.cameras,
                time.monotonic() - started,
            )
            if device.owners.count() == 0 and under_journal(os.environ, out):
                # The journal is a log: the code stays in its 0600 file.
                print(
                    "doorward: pair a phone with the setup code in "
                    f"{device.data_dir / 'keys' / 'setup-code'} (readable by the service user only)",
                    file=out,
                    flush=True,
                )
            elif device.owners.count() == 0:
                _print_pairing(device, _display_host(config.host), port, out)
            print(
                f"doorward: serving {url} (device {device.identity.device_id})",
                file=out,
                flush=True,
            )
            if on_running is not None:
                on_running(running)
            if on_ready is not None:
                on_ready(url)
            await stop.wait()
            logger.info("serve.stopping")
            supervisor.stopping()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if advertiser is not None:
            try:
                await asyncio.wait_for(advertiser.close(), 10.0)
            except (OSError, RuntimeError, TimeoutError) as exc:
                logger.warning("serve.withdraw_failed error=%s", type(exc).__name__)
        listener.close()
        page_listener.close()
        if device is not None:
            device.close()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        os.umask(umask)
        notifier.close()
    logger.info("serve.stopped")
    return 0


def _running_config(config: ServeConfig) -> RunningConfig:
    from hub.server.reload import RunningConfig

    return RunningConfig(config)


def _supervise(
    running: Any, settings: RunningConfig, notifier: Notifier, tasks: set[asyncio.Task[Any]]
) -> Supervisor:
    """Start telling the service manager (if any) how the device is: READY, STATUS, WATCHDOG."""
    from hub.server.health import Deadlines
    from hub.server.watchdog import Supervisor

    supervisor = Supervisor(
        running.health,
        notifier,
        deadlines=lambda: Deadlines(settings.current.watchdog_stall_s, settings.current.segment_s),
        watchdog_usec=watchdog_usec(os.environ, os.getpid()),
    )
    tasks.add(asyncio.get_running_loop().create_task(supervisor.run()))
    return supervisor


def _on_sighup(
    loop: asyncio.AbstractEventLoop,
    reload: Callable[[], ServeConfig],
    settings: RunningConfig,
    supervisor: Supervisor,
    tasks: set[asyncio.Task[Any]],
) -> None:
    """SIGHUP re-reads the config and applies what it can; one reload at a time."""
    busy = asyncio.Lock()

    async def reload_once() -> None:
        async with busy:
            supervisor.reloading()
            logger.info("serve.reloading")
            try:
                loaded = await asyncio.to_thread(reload)
            except ConfigError as exc:
                logger.error("serve.reload_failed error=%s", exc)
                supervisor.reloaded(f"reload failed, running on the previous config: {exc}")
                return
            plan = settings.apply(loaded)
            logger.info(
                "serve.reloaded applied=%s needs_restart=%s",
                ",".join(plan.applied) or "-",
                ",".join(plan.needs_restart) or "-",
            )
            note = f"reloaded: {', '.join(plan.applied) or 'nothing changed'}"
            if plan.needs_restart:
                note += f"; restart to apply {', '.join(plan.needs_restart)}"
            supervisor.reloaded(note)

    def on_signal() -> None:
        task = loop.create_task(reload_once())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, on_signal)


def _check_camera_names(config: ServeConfig, cameras: list[CameraConfig]) -> None:
    names = {camera.name for camera in cameras}
    for option, named in (
        ("privacy_zones", config.privacy_zones),
        ("motion_masks", config.motion_masks),
        ("speakers", config.speakers),
    ):
        unknown = sorted({name for name, _ in named} - names)
        if unknown:
            raise ConfigError(
                f"{option} name camera(s) {', '.join(unknown)} that are not configured "
                f"(cameras: {', '.join(camera.name for camera in cameras)})"
            )


def _pairing_state(config: ServeConfig) -> PairingState:
    """The pairing state as the API will report it (``PairingDesk.state``), read from the data
    directory before the API exists."""
    attempts = PairingAttempts.in_dir(config.data_dir, limit=config.max_pairing_failures)
    db_path = config.data_dir / "doorward.db"
    if not db_path.exists():
        return pairing_state(attempts, 0)
    owners = OwnersTable(db_path)
    try:
        return pairing_state(attempts, owners.count())
    finally:
        owners.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 picks a free port), as aiohttp would bind."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _advertise(
    config: ServeConfig, port: int, tasks: set[asyncio.Task[Any]], started: float
) -> tuple[discovery.Advertiser, asyncio.Task[None]]:
    """Start advertising in the background, before the rest of start-up: its TXT record needs
    only the device id, TLS fingerprint and pairing state, all read from the data directory."""
    identity = DeviceIdentity.load_or_create(config.data_dir / "keys" / "device.ed25519")
    record = discovery.DiscoveredDevice(
        device_id=identity.device_id,
        name=config.name,
        port=port,
        pairing=_pairing_state(config),
        fingerprint=spki_fingerprint(identity.public_key),
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
    advertiser: discovery.Advertiser,
    starting: asyncio.Task[None],
    pairing: PairingDesk,
    tasks: set[asyncio.Task[Any]],
) -> None:
    """Re-announce whenever the API's pairing state changes, and now if it differs from the state
    read at start-up."""
    loop = asyncio.get_running_loop()

    async def reannounce(new_state: PairingState) -> None:
        await asyncio.shield(starting)
        await advertiser.update(pairing=new_state)

    def schedule(new_state: PairingState) -> None:
        tasks.add(loop.create_task(reannounce(new_state)))

    # Pairing changes happen on the API's write thread: hop to the loop to re-announce.
    pairing.on_state = lambda new_state: loop.call_soon_threadsafe(schedule, new_state)
    if pairing.state != advertiser.device.pairing:
        schedule(pairing.state)


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
        qr = segno.make(uri.to_uri(), error="m")
        qr.terminal(out=out, compact=True)  # type: ignore[arg-type]
    except (ImportError, ValueError) as exc:
        logger.warning("serve.qr_unavailable error=%s", type(exc).__name__)
    print(f"  pairing URI: {uri.to_uri()}", file=out, flush=True)


def _display_host(host: str) -> str:
    """Where a client on this machine reaches the API (a wildcard address means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
