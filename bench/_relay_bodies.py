"""A large download through the relay against the same download over direct HTTPS, for
``bench/relay.py``.

    relay_vs_direct()   {"relay_vs_direct": ..., "relay_mib_per_s": ...,
                         "direct_mib_per_s": ..., "download_mib": ...}

A device (its real API on loopback, real TLS) holds one segment of ``mib`` MiB encrypted to one
owner; a real Mosquitto with the shipped configuration runs on loopback, and the device's relay
connection answers through it. Then, alternately and ``rounds`` times each, the owner's
``DoorwardClient.download_segment`` of that segment over the relay (chunked Oblivious HTTP, one
broker message per 63 KiB, acknowledged by the client, at most 8 ahead) and over direct HTTPS
(pinned TLS). The figure is the relay's throughput over the direct download's (best round of
each), so the machine cancels out. No backup store: every byte goes through the broker.
``python bench/_relay_bodies.py --json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from crypto import age
from crypto.keys import KeyBundle, key_id
from hub.client import DoorwardClient
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.relay.device import RelayDevice, RelayLogin
from hub.server.app import create_app
from hub.server.config import ServeConfig
from hub.server.guard import request_limits
from hub.server.state import Device

__all__ = ["relay_vs_direct"]

_MIB = 1024 * 1024


def relay_vs_direct(*, mib: int = 10, rounds: int = 3) -> dict[str, float]:
    """Measure a ``mib`` MiB segment download over the relay against direct HTTPS on loopback."""
    with tempfile.TemporaryDirectory(prefix="doorward-relay-bench-") as tmp:
        root = Path(tmp)
        owner = KeyBundle.generate("x25519")
        first = Device.open(root / "device")
        device_id = first.identity.device_id
        first.close()
        broker = MosquittoBroker(
            root / "broker", devices=[device_id], clients=[key_id(owner.signing_key.public_key())]
        )
        broker.start()
        try:
            return asyncio.run(_measure(root, broker, owner, mib, rounds))
        finally:
            broker.stop()


async def _measure(
    root: Path, broker: MosquittoBroker, owner: KeyBundle, mib: int, rounds: int
) -> dict[str, float]:
    async with _device(root / "device") as (device, url):
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        segment_id = _record(device, owner, mib)
        assert device.relay_key is not None
        relay = RelayDevice(
            RelayLogin(
                broker.host,
                broker.device_port,
                device.identity.device_id,
                broker.credentials(device.identity.device_id).password,
                broker.tls_context(),
            ),
            device_id=device.identity.device_id,
            gateway_key=device.relay_key,
            pq_key=device.relay_pq_key,
            api_url=url,
            fingerprint=device.fingerprint,
        )
        running = asyncio.ensure_future(relay.run())
        try:
            async with asyncio.timeout(10):
                await relay.connected.wait()
            client_id = key_id(owner.signing_key.public_key())
            transport = RelayTransport(
                host=broker.host,
                port=broker.client_port,
                tls=broker.tls_context(),
                client_id=client_id,
                password=broker.credentials(client_id).password,
                device_id=device.identity.device_id,
                key_config=device.relay_keys() or b"",
            )
            fingerprint, device_id = device.fingerprint, device.identity.device_id
            relayed_s: list[float] = []
            direct_s: list[float] = []
            size = 0
            direct = DoorwardClient(
                url, fingerprint=fingerprint, device_id=device_id, key=owner.signing_key
            )
            over_relay = DoorwardClient(
                url,
                fingerprint=fingerprint,
                device_id=device_id,
                key=owner.signing_key,
                relay=transport,
            )
            async with transport, direct:
                for _ in range(rounds):
                    for client, times in ((over_relay, relayed_s), (direct, direct_s)):
                        sink = io.BytesIO()
                        started = time.perf_counter()
                        size = await client.download_segment(segment_id, sink, offsite=False)
                        times.append(time.perf_counter() - started)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    relay_rate = size / _MIB / min(relayed_s)
    direct_rate = size / _MIB / min(direct_s)
    return {
        "relay_vs_direct": round(relay_rate / direct_rate, 4),
        "relay_mib_per_s": round(relay_rate, 2),
        "direct_mib_per_s": round(direct_rate, 2),
        "download_mib": round(size / _MIB, 2),
    }


@contextlib.asynccontextmanager
async def _device(data_dir: Path) -> AsyncIterator[tuple[Device, str]]:
    """The device's API on an ephemeral loopback port, with its own TLS certificate."""
    config = ServeConfig(data_dir=data_dir)
    device = Device.open(data_dir, request_limits=config.request_limits())
    app = create_app(device.deps({}, config))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **request_limits(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield device, f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        device.close()


def _record(device: Device, owner: KeyBundle, mib: int) -> str:
    """One clip of one ``mib`` MiB segment encrypted to ``owner``; its segment id."""
    store = device.store
    start_s = time.time() - 600
    clip_id = store.open_clip("front", start_s)
    file = store.open_segment(clip_id, 0)
    with age.Encryptor(file, [owner.age_identity.recipient()]) as enc:  # type: ignore[arg-type]
        for _ in range(mib):
            enc.write(os.urandom(_MIB))
    store.commit_segment(
        clip_id, 0, file, start_s=start_s, duration_s=2.0, payload_sha256=enc.payload_sha256
    )
    store.finish_clip(clip_id, start_s + 2)
    return f"{clip_id}.000000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    result = relay_vs_direct(mib=args.mib, rounds=args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
