"""A real doorbell with ``[relay]`` (``hub.server.runtime``, a simulated camera whose button the
test presses) and a real Mosquitto broker, for the relay's event tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto.keys import KeyBundle
from hardware.sim import SimulatedCamera, parse_scenario
from hub.client import DoorwardClient
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.server import runtime
from hub.server.config import RelayConfig, ServeConfig, parse_camera
from hub.server.state import Device
from tests.relay.relaykit import OPERATOR, availability, client, need_mosquitto, next_message

SCENARIO = "[camera]\nwidth = 160\nheight = 120\nfps = {fps}\nseconds = 3600\nseed = 3\n"


@dataclass
class EventRig:
    broker: MosquittoBroker
    running: runtime.Running
    camera: SimulatedCamera
    owners: list[KeyBundle]
    url: str

    @property
    def device(self) -> Device:
        return self.running.device

    @property
    def device_id(self) -> str:
        return self.device.identity.device_id

    def transport(self, keys: KeyBundle, *, session_expiry_s: int | None = None) -> RelayTransport:
        """The owner's relay connection, subscribed to its events."""
        assert self.device.relay_key is not None
        return RelayTransport(
            host=self.broker.host,
            port=self.broker.client_port,
            tls=self.broker.tls_context(),
            client_id=keys.key_id,
            password=self.broker.credentials(keys.key_id).password,
            device_id=self.device_id,
            key_config=bytes(self.device.relay_key.config()),
            timeout_s=10.0,
            identity=keys.age_identity,
            session_expiry_s=session_expiry_s,
        )

    def lan(self, keys: KeyBundle) -> DoorwardClient:
        """The owner's signed client on the LAN."""
        return DoorwardClient(
            self.url,
            fingerprint=self.device.fingerprint,
            device_id=self.device_id,
            key=keys.signing_key,
        )

    def relayed(self, keys: KeyBundle, transport: RelayTransport) -> DoorwardClient:
        """The owner's client with every call (and the event stream) through the relay."""
        return DoorwardClient(
            self.url,
            fingerprint=self.device.fingerprint,
            device_id=self.device_id,
            key=keys.signing_key,
            relay=transport,
        )


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.asynccontextmanager
async def event_rig(
    tmp_path: Path, owners: Sequence[KeyBundle], *, fps: int = 10
) -> AsyncIterator[EventRig]:
    """The device (``owners`` paired, the first admin) running with ``[relay]`` against a fresh
    broker that knows the device, the owners (who may read its availability) and an operator;
    returns once the device is online at the broker."""
    need_mosquitto()
    data = tmp_path / "data"
    device = Device.open(data)
    device_id = device.identity.device_id
    for index, keys in enumerate(owners):
        device.owners.add(keys.public(), name=f"phone{index}", now=int(time.time()))
    device.close()
    ids = [k.key_id for k in owners]
    broker = MosquittoBroker(
        tmp_path / "broker",
        devices=[device_id],
        clients=ids,
        owners={cid: (device_id,) for cid in ids},
        operators=[OPERATOR],
    )
    broker.start()
    secret = tmp_path / "relay-password"
    secret.write_text(broker.credentials(device_id).password + "\n")
    secret.chmod(0o600)
    scenario = tmp_path / "front.toml"
    scenario.write_text(SCENARIO.format(fps=fps))
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
    stop = asyncio.Event()
    try:
        async with runtime.running_device(
            config, cameras, device, {"front": camera}, api=api, page=page, stop=stop
        ) as running:
            assert running is not None
            async with client(broker, ids[0]) as watcher:
                await watcher.subscribe(availability(device_id), qos=1)
                while (await next_message(watcher)).payload != b"online":
                    pass
            url = f"https://127.0.0.1:{api.getsockname()[1]}"
            yield EventRig(broker, running, camera, list(owners), url)
    finally:
        device.close()
        api.close()
        page.close()
        broker.stop()
