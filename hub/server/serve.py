"""``doorward serve``: the device itself, from start to a clean stop.

Start-up order matters for how soon phones see the doorbell: :func:`serve` binds the API's port,
starts the zeroconf advertisement (its record needs only the device id, TLS pin and pairing state,
read from the data directory) and, while the probes go out (RFC 6762 §8.1), imports
:mod:`hub.server.runtime` and opens the device and its cameras in a worker thread. Then the cameras
record, the API listens and the setup code is printed.

:func:`serve` runs until SIGINT/SIGTERM (or ``stop``), then stops the cameras (each finishes its
open segment), the API and the databases, and returns 0. Log lines are ``event key=value`` and
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
from hub.wire import discovery

if TYPE_CHECKING:
    from hub.server.pairing import PairingDesk
    from hub.server.state import Device

__all__ = ["serve"]

logger = logging.getLogger(__name__)


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
        device, sources = await asyncio.to_thread(runtime.open_device, config, cameras)
        async with runtime.running_device(
            config, cameras, device, sources, api=listener, page=page_listener, stop=stop
        ) as running:
            if running is None:
                return 0
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
            if device.owners.count() == 0:
                _print_pairing(device, _display_host(config.host), port, out)
            print(
                f"doorward: serving {url} (device {device.identity.device_id})",
                file=out,
                flush=True,
            )
            if on_ready is not None:
                on_ready(url)
            await stop.wait()
            logger.info("serve.stopping")
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
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        os.umask(umask)
    logger.info("serve.stopped")
    return 0


def _check_camera_names(config: ServeConfig, cameras: list[CameraConfig]) -> None:
    names = {camera.name for camera in cameras}
    for option, named in (
        ("privacy_zones", config.privacy_zones),
        ("motion_masks", config.motion_masks),
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
