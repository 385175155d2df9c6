"""Event latency through the relay, for a future ``bench/relay.py``.

    relay_event_latency(presses=50, fps=15)
        {"press_p50_ms", "press_p95_ms", "bus_p50_ms", "bus_p95_ms", "presses", "fps", ...}

A real device (``hub.server.runtime`` with ``[relay]``, a simulated camera in real time at ``fps``)
and a real Mosquitto broker on loopback; one owner's phone (``RelayTransport``) is subscribed to
its events. Two series, one event at a time:

- ``press``: from pressing the camera's button until the owner's client has decrypted the
  ``doorbell.pressed`` event. The pipeline takes a press with the next frame, so this includes up
  to one frame interval (presses are spaced by a random pause so they land anywhere in a frame).
- ``bus``: from publishing an event on the device's bus until the owner has decrypted it: the
  relay's own share (subscription, sealing in a worker thread, MQTT 5 over TLS both ways,
  decryption).

Goal: ``press_p95_ms`` <= 100. ``python bench/_relay_events.py --json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto.keys import KeyBundle
from hardware.sim import SimulatedCamera, parse_scenario
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.server import appkeys, runtime
from hub.server.config import RelayConfig, ServeConfig, parse_camera
from hub.server.state import Device
from hub.wire.events import Event

_SCENARIO = "[camera]\nwidth = 320\nheight = 240\nfps = {fps}\nseconds = 3600\nseed = 3\n"
_WAIT_S = 10.0


@dataclass
class RelayDoorbell:
    """A running device with ``[relay]``, its camera (to press) and its owner's relay transport."""

    running: runtime.Running
    camera: SimulatedCamera
    owner: KeyBundle
    transport: RelayTransport


@contextlib.asynccontextmanager
async def relay_doorbell(directory: Path, *, fps: int = 15) -> AsyncIterator[RelayDoorbell]:
    """The device (one x25519 owner) and the broker in ``directory``, the owner connected."""
    data = directory / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    device_id = device.identity.device_id
    device.owners.add(owner.public(), name="phone", now=int(time.time()))
    device.close()
    broker = MosquittoBroker(directory / "broker", devices=[device_id], clients=[owner.key_id])
    await asyncio.to_thread(broker.start)
    secret = directory / "relay-password"
    secret.write_text(broker.credentials(device_id).password + "\n")
    secret.chmod(0o600)
    scenario = directory / "front.toml"
    scenario.write_text(_SCENARIO.format(fps=fps))
    config = ServeConfig(
        data_dir=data,
        cameras=(f"front=simulated:{scenario}",),
        host="127.0.0.1",
        port=0,
        advertise=False,
        relay=RelayConfig(f"mqtts://{broker.host}:{broker.device_port}", secret, broker.ca_path),
    )
    cameras = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    camera = SimulatedCamera(parse_scenario(scenario.read_text(), "front.toml"), realtime=True)
    device = Device.open(data, request_limits=config.request_limits())
    api, page = _listener(), _listener()
    try:
        async with runtime.running_device(
            config, cameras, device, {"front": camera}, api=api, page=page, stop=asyncio.Event()
        ) as running:
            assert running is not None
            assert device.relay_key is not None
            transport = RelayTransport(
                host=broker.host,
                port=broker.client_port,
                tls=broker.tls_context(),
                client_id=owner.key_id,
                password=broker.credentials(owner.key_id).password,
                device_id=device_id,
                key_config=device.relay_keys() or b"",
                identity=owner.age_identity,
            )
            async with transport:
                doorbell = RelayDoorbell(running, camera, owner, transport)
                await _until_relayed(doorbell)
                yield doorbell
    finally:
        device.close()
        api.close()
        page.close()
        await asyncio.to_thread(broker.stop)


async def event_latencies(
    trigger: Callable[[int], None],
    events: AsyncIterator[Event],
    *,
    count: int,
    kind: str,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> list[float]:
    """Milliseconds from ``trigger(i)`` until ``events`` yields the next event of ``kind``, for
    ``count`` triggers one after another (``pause`` awaited before each)."""
    out = []
    for index in range(count):
        if pause is not None:
            await pause()
        start = time.perf_counter()
        trigger(index)
        async with asyncio.timeout(_WAIT_S):
            while (await anext(events)).kind != kind:
                pass
        out.append((time.perf_counter() - start) * 1000.0)
    return out


async def measure(doorbell: RelayDoorbell, *, presses: int = 50) -> dict[str, Any]:
    """Both series on a running ``doorbell``: p50 and p95 in milliseconds of each."""
    events = doorbell.transport.events()
    bus = doorbell.running.app[appkeys.BUS]
    rng = random.Random(1)

    async def pause() -> None:
        await asyncio.sleep(0.1 + rng.random() * 0.2)

    pressed = await event_latencies(
        lambda _: doorbell.camera.button.press(),
        events,
        count=presses,
        kind="doorbell.pressed",
        pause=pause,
    )
    relayed = await event_latencies(
        lambda i: bus.publish("live.ended", camera="front", session=i),
        events,
        count=presses,
        kind="live.ended",
        pause=pause,
    )
    await events.aclose()  # type: ignore[attr-defined]
    return {
        "press_p50_ms": round(_quantile(pressed, 0.5), 2),
        "press_p95_ms": round(_quantile(pressed, 0.95), 2),
        "press_max_ms": round(max(pressed), 2),
        "bus_p50_ms": round(_quantile(relayed, 0.5), 2),
        "bus_p95_ms": round(_quantile(relayed, 0.95), 2),
        "presses": presses,
    }


async def relay_event_latency(*, presses: int = 50, fps: int = 15) -> dict[str, Any]:
    """A device, a broker and an owner in a temporary directory; :func:`measure` on them."""
    with tempfile.TemporaryDirectory(prefix="doorward-relay-events-") as directory:
        async with relay_doorbell(Path(directory), fps=fps) as doorbell:
            result = await measure(doorbell, presses=presses)
    return {**result, "fps": fps}


async def _until_relayed(doorbell: RelayDoorbell) -> None:
    """Publish a probe event until one reaches the owner (the device's relay is connected)."""
    bus = doorbell.running.app[appkeys.BUS]
    events = doorbell.transport.events()
    try:
        async with asyncio.timeout(30.0):
            while True:
                bus.publish("live.ended", camera="probe")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        while (await anext(events)).kind != "live.ended":
                            pass
                        return
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=50)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()
    result = asyncio.run(relay_event_latency(presses=args.presses, fps=args.fps))
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
