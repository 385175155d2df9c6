"""Attacks on a running doorbell for hub tests: a ``doorward serve`` on loopback with one paired
owner, and raw TCP and TLS connections that never finish a request.

Loopback is a /8 on Linux, so an attacker connects from 127.0.0.2 and up while the owner's
client connects from 127.0.0.1: the two are different addresses to the doorbell.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crypto.keys import KeyBundle
from crypto.tls import client_context
from hub.client import DoorwardClient
from hub.server.config import ServeConfig
from hub.server.runtime import Running
from hub.server.serve import serve
from hub.server.state import Device

HOST = "127.0.0.1"
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]

SCENARIO = """[camera]
width = 160
height = 120
fps = 10
seconds = 600
seed = 3
"""


def attacker_address(n: int) -> str:
    """The n-th attacker's source address (127.0.0.2, 127.0.0.3, …)."""
    return f"127.0.{(n + 2) // 256}.{(n + 2) % 256}"


@dataclass
class Doorbell:
    """A running ``doorward serve`` and its one paired owner."""

    url: str
    port: int
    fingerprint: str
    device_id: str
    owner: KeyBundle
    # The device's parts (its speakers, pipelines, store) when it runs in this process.
    running: Running | None = None

    def client(self) -> DoorwardClient:
        return DoorwardClient(
            self.url,
            fingerprint=self.fingerprint,
            device_id=self.device_id,
            key=self.owner.signing_key,
            timeout_s=30.0,
        )


def paired_data_dir(data_dir: Path) -> tuple[KeyBundle, str, str]:
    """Create a device's data directory with one paired owner; (owner, device id, TLS pin)."""
    owner = KeyBundle.generate("x25519")
    device = Device.open(data_dir)
    try:
        device.owners.add(owner.public(), name="phone", now=int(time.time()))
        return owner, device.identity.device_id, device.fingerprint
    finally:
        device.close()


def serve_config(tmp_path: Path, **options: Any) -> ServeConfig:
    """A small ``doorward serve`` config on 127.0.0.1 (a 160x120 simulated camera)."""
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO)
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=(f"front=simulated:{scenario}",),
        host=HOST,
        port=0,
        advertise=False,
        segment_s=1.0,
    )
    return replace(config, **options)


@contextlib.asynccontextmanager
async def serving(config: ServeConfig) -> AsyncIterator[Doorbell]:
    """Run ``doorward serve`` with ``config`` (one owner paired first) until the block ends."""
    owner, device_id, fingerprint = paired_data_dir(config.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    running: asyncio.Future[Running] = loop.create_future()
    ready: asyncio.Future[str] = loop.create_future()
    server = asyncio.ensure_future(
        serve(
            config,
            stop=stop,
            out=io.StringIO(),
            on_running=running.set_result,
            on_ready=ready.set_result,
        )
    )
    try:
        url = await asyncio.wait_for(asyncio.shield(ready), 30)
        port = int(url.rsplit(":", 1)[1])
        yield Doorbell(url, port, fingerprint, device_id, owner, await running)
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)


async def open_raw(port: int, *, source: str = HOST) -> Connection:
    """A TCP connection that never starts TLS."""
    return await asyncio.open_connection(HOST, port, local_addr=(source, 0))


async def open_tls(port: int, fingerprint: str, *, source: str = HOST) -> Connection:
    """A TLS connection to the doorbell (handshake done) that has sent nothing yet."""
    return await asyncio.open_connection(
        HOST, port, ssl=client_context(fingerprint), local_addr=(source, 0)
    )


async def closed_by_server(reader: asyncio.StreamReader, *, within_s: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within_s``; anything the
    server sends first is read and dropped."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


def is_open(reader: asyncio.StreamReader) -> bool:
    """Whether nothing has ended the connection yet (no EOF, no error seen by the reader)."""
    return not reader.at_eof() and reader.exception() is None


def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.transport.abort()
