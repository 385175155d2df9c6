"""The relay: a signed call through the broker against direct HTTPS, bell-to-phone event latency,
the broker's CPU per thousand idle doorbells, and what the relay adds to the doorbell's memory.

    python bench/relay.py [--json] [--calls 200] [--devices 1000] [--idle-seconds 60]

Everything runs on loopback against a real Mosquitto started with the shipped configuration
(``hub.relay.broker.MosquittoBroker``: TLS on both listeners, passwords, ACLs).

- ``relay_rtt_vs_direct``: a real ``doorward serve`` process (one simulated camera recording,
  ``[relay]`` configured) and its owner. The subject is a signed ``GET /health`` sent through the
  relay (Binary HTTP, Oblivious HTTP, MQTT 5 QoS 1 both ways, the device's loopback hop to its own
  API); the anchor is the same signed call over direct HTTPS with a kept-alive connection. Calls
  alternate subject/anchor, ``--calls`` of each after 20 warm-up calls of each; the figure is the
  median round trip of the subject over the anchor's. Goal <= 2.0. ``health_call_request_bytes``
  and ``health_call_answer_bytes`` are the MQTT payloads of one such call (what the broker sees).
- ``event_latency_p50_ms`` / ``event_latency_p95_ms``: from ``bench/_relay_events.py``: a press on
  the simulated doorbell's button (a real device, its camera at ``--fps``, 15 by default) to the
  owner's client having decrypted the age-encrypted event from its topic, ``--presses`` presses.
  The pipeline takes a press with the next frame, so up to one frame interval is in it;
  ``event_relay_share_p95_ms`` is the relay's own share (event bus to decrypted). Goal p95 <= 100.
- ``broker_cpu_per_1k_devices``: ``--devices`` simulated doorbells log in to one broker on the
  doorbells' listener (TLS, each with its own password, clean start off, a week's session
  expiry), subscribe to their inbox at QoS 1, and then idle as a doorbell does, sending the MQTT
  keepalive ping every ``--keepalive`` seconds (staggered). The broker's CPU time (user + system,
  from ``/proc``) over ``--idle-seconds`` of idling, in cores per thousand doorbells.
  ``broker_rss_per_1k_devices_MB`` is its resident memory over the same. ``broker_connect_cpu_ms``
  is its CPU per login (TLS handshake, password check, session), which a reconnect storm after an
  outage costs.
- ``download_*``: from ``bench/_relay_bodies.py``: one ``--download-mib`` MiB segment downloaded by
  its owner through the relay (chunked, flow-controlled) against direct HTTPS, best of 3; no goal
  in the issue, reported as the ratio of throughputs.
- ``broker_cpu_us_per_message``: a client publishes ``--messages`` messages of an event's size
  (2,171 bytes: one event to an owner with a hybrid key) at QoS 1 into one doorbell's inbox, and
  the doorbell takes them: the broker's CPU over the run per message (in, out and both acks;
  a message the doorbell's queue overflowed on counts half).
  The Python clients, not the broker, set the pace (``broker_messages_per_s_seen``).
- ``device_rss_relay_MB``: the resident memory of the ``serve`` process with ``[relay]`` after
  the calls, minus that of the same device, camera and calls (direct only) without it.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))
sys.path.append(
    str(_REPO / "bench")
)  # bench/_relay_events.py (after the repository: bench/crypto.py)

from crypto.keys import KeyBundle, key_id, write_secret_file  # noqa: E402
from hub.client import DoorwardClient  # noqa: E402
from hub.relay.broker import MosquittoBroker  # noqa: E402
from hub.relay.client import RelayTransport  # noqa: E402
from hub.server.state import Device  # noqa: E402

_START_TIMEOUT_S = 60.0
_WARMUP_CALLS = 20
_SETTLE_S = 3.0


@dataclass
class Serving:
    """A ``doorward serve`` process and the owner that reaches it."""

    process: asyncio.subprocess.Process
    url: str
    device_id: str
    fingerprint: str
    owner: KeyBundle
    log: Path

    def client(self, relay: RelayTransport | None = None) -> DoorwardClient:
        return DoorwardClient(
            self.url,
            fingerprint=self.fingerprint,
            device_id=self.device_id,
            key=self.owner.signing_key,
            timeout_s=30.0,
            relay=relay,
        )

    def rss_mb(self) -> float:
        return _rss_mb(self.process.pid)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def serving(
    work: Path, owner: KeyBundle, *, relay: MosquittoBroker | None
) -> AsyncIterator[Serving]:
    """``doorward serve`` on loopback with one simulated camera (and ``[relay]`` for ``relay``)."""
    data = work / "data"
    device = Device.open(data)
    try:
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        device_id, fingerprint = device.identity.device_id, device.fingerprint
    finally:
        device.close()
    config = work / "serve.toml"
    text = "segment_s = 2.0\n"
    if relay is not None:
        password = work / "relay-password"
        write_secret_file(password, relay.credentials(device_id).password.encode() + b"\n")
        text += (
            f'[relay]\nurl = "mqtts://{relay.host}:{relay.device_port}"\n'
            f'credentials_file = "{password}"\nca_file = "{relay.ca_path}"\n'
        )
    config.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    env.pop("NOTIFY_SOCKET", None)
    log = work / "serve.log"
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli.main", "-v", "serve", "--config", str(config),
            "--data", str(data), "--camera", "front=simulated",
            "--host", "127.0.0.1", "--port", "0", "--no-advertise",
            stdout=subprocess.PIPE, stderr=err, cwd=_REPO, env=env,
        )  # fmt: skip
    assert process.stdout is not None
    try:
        line = b""
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not line.startswith(b"doorward: serving "):
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(log.read_text(errors="replace")[-3000:])
            if relay is not None:
                while b"relay.connected" not in log.read_bytes():  # noqa: ASYNC110 - a log file
                    await asyncio.sleep(0.1)
        yield Serving(process, line.split()[2].decode(), device_id, fingerprint, owner, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _transport(broker: MosquittoBroker, serving: Serving, key_config: bytes) -> RelayTransport:
    cid = key_id(serving.owner.signing_key.public_key())
    return RelayTransport(
        host=broker.host,
        port=broker.client_port,
        tls=broker.tls_context(),
        client_id=cid,
        password=broker.credentials(cid).password,
        device_id=serving.device_id,
        key_config=key_config,
    )


async def rtt_and_rss(work: Path, calls: int) -> dict[str, float]:
    """The relayed call against the direct one, and the device's memory with and without the
    relay."""
    owner = KeyBundle.generate("x25519")
    owner_id = key_id(owner.signing_key.public_key())
    # The device id must be known to the broker before the device connects: make it first.
    probe = Device.open(work / "relay" / "data")
    device_id = probe.identity.device_id
    probe.close()
    broker = MosquittoBroker(work / "broker", devices=[device_id], clients=[owner_id])
    await asyncio.to_thread(broker.start)
    try:
        async with serving(work / "relay", owner, relay=broker) as device:
            async with device.client() as direct:
                key_config = await direct.relay_key_config()
                async with _transport(broker, device, key_config) as transport:
                    relayed = device.client(transport)
                    for _ in range(_WARMUP_CALLS):
                        await relayed.health()
                        await direct.health()
                    sent, received = transport.sent_bytes, transport.received_bytes
                    await relayed.health()
                    call_bytes = (
                        transport.sent_bytes - sent,
                        transport.received_bytes - received,
                    )
                    subject, anchor = [], []
                    for _ in range(calls):
                        started = time.perf_counter()
                        await relayed.health()
                        subject.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        await direct.health()
                        anchor.append(time.perf_counter() - started)
            await asyncio.sleep(_SETTLE_S)
            rss_with = device.rss_mb()
    finally:
        await asyncio.to_thread(broker.stop)
    async with serving(work / "direct", KeyBundle.generate("x25519"), relay=None) as plain:
        async with plain.client() as direct:
            for _ in range(_WARMUP_CALLS + 2 * calls):
                await direct.health()
        await asyncio.sleep(_SETTLE_S)
        rss_without = plain.rss_mb()
    relay_ms, direct_ms = statistics.median(subject) * 1e3, statistics.median(anchor) * 1e3
    return {
        "relay_rtt_ms_p50": round(relay_ms, 2),
        "relay_rtt_ms_p95": round(_p95(subject) * 1e3, 2),
        "direct_rtt_ms_p50": round(direct_ms, 2),
        "relay_rtt_vs_direct": round(relay_ms / direct_ms, 3),
        "health_call_request_bytes": call_bytes[0],
        "health_call_answer_bytes": call_bytes[1],
        "device_rss_with_relay_MB": round(rss_with, 1),
        "device_rss_without_relay_MB": round(rss_without, 1),
        "device_rss_relay_MB": round(rss_with - rss_without, 1),
    }


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


# -- idle doorbells -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def _connect_packet(name: str, password: str, keepalive_s: int) -> bytes:
    """MQTT 5 CONNECT (§3.1): user name and password, clean start off, a week's session."""
    properties = b"\x11" + (7 * 24 * 3600).to_bytes(4, "big")  # session expiry interval
    body = (
        _text("MQTT")
        + bytes([5, 0x80 | 0x40])  # user name, password; clean start off
        + keepalive_s.to_bytes(2, "big")
        + _varint(len(properties))
        + properties
        + _text(name)
        + _text(name)
        + _text(password)
    )
    return b"\x10" + _varint(len(body)) + body


def _subscribe_packet(topic: str) -> bytes:
    """MQTT 5 SUBSCRIBE (§3.8) of one filter at QoS 1."""
    body = b"\x00\x01" + b"\x00" + _text(topic) + b"\x01"
    return b"\x82" + _varint(len(body)) + body


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        digit = (await reader.readexactly(1))[0]
        length |= (digit & 0x7F) << shift
        shift += 7
        if not digit & 0x80:
            break
    return kind, await reader.readexactly(length)


class _Doorbell:
    """One idle doorbell's MQTT connection, made of raw packets (cheap enough for thousands)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(
        cls, broker: MosquittoBroker, name: str, tls: ssl.SSLContext, keepalive_s: int
    ) -> _Doorbell:
        reader, writer = await asyncio.open_connection(broker.host, broker.device_port, ssl=tls)
        writer.write(_connect_packet(name, broker.credentials(name).password, keepalive_s))
        kind, body = await _packet(reader)
        if kind != 0x20 or body[1] != 0:
            raise RuntimeError(f"broker refused doorbell {name}: CONNACK {body[:2].hex()}")
        writer.write(_subscribe_packet(f"doorward/v1/dev/{name}/in/+"))
        kind, body = await _packet(reader)
        if kind != 0x90:
            raise RuntimeError(f"no SUBACK for doorbell {name}")
        return cls(reader, writer)

    async def idle(self, keepalive_s: float, offset_s: float) -> int:
        """Ping every ``keepalive_s`` (first after ``offset_s``) until cancelled; pings sent."""
        pings = 0
        await asyncio.sleep(offset_s)
        while True:
            self.writer.write(b"\xc0\x00")
            kind, _ = await _packet(self.reader)
            if kind != 0xD0:
                raise RuntimeError(f"expected PINGRESP, got packet type {kind >> 4}")
            pings += 1
            await asyncio.sleep(keepalive_s)

    def close(self) -> None:
        self.writer.close()


async def idle_doorbells(work: Path, devices: int, idle_s: float, keepalive_s: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = devices * 2 + 256
    if soft < needed:  # the broker inherits this process's limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    names = [f"bell{n:06d}" for n in range(devices)]
    broker = MosquittoBroker(work / "idle-broker", devices=names)
    await asyncio.to_thread(broker.start)
    bells: list[_Doorbell] = []
    try:
        pid = broker.pid
        assert pid is not None
        tls = broker.tls_context()
        gate = asyncio.Semaphore(32)

        async def one(name: str) -> _Doorbell:
            async with gate:
                return await _Doorbell.connect(broker, name, tls, keepalive_s)

        rss_before = _rss_mb(pid)
        cpu_before = _cpu_s(pid)
        bells = list(await asyncio.gather(*(one(name) for name in names)))
        connect_cpu = _cpu_s(pid) - cpu_before
        rng = secrets.SystemRandom()
        idlers = [
            asyncio.ensure_future(bell.idle(keepalive_s, rng.uniform(0, keepalive_s)))
            for bell in bells
        ]
        await asyncio.sleep(2.0)  # past the last SUBACK's bookkeeping
        cpu_start, wall_start = _cpu_s(pid), time.monotonic()
        await asyncio.sleep(idle_s)
        cpu_idle, wall = _cpu_s(pid) - cpu_start, time.monotonic() - wall_start
        rss_after = _rss_mb(pid)
        for task in idlers:
            task.cancel()
        results = await asyncio.gather(*idlers, return_exceptions=True)
        failed = [r for r in results if not isinstance(r, asyncio.CancelledError)]
        if failed:
            raise RuntimeError(f"{len(failed)} doorbells lost their connection: {failed[0]!r}")
        thousands = devices / 1000
        return {
            "idle_devices": devices,
            "idle_seconds": round(wall, 1),
            "keepalive_s": keepalive_s,
            "broker_cpu_s_idle": round(cpu_idle, 3),
            "broker_cpu_per_1k_devices": round(cpu_idle / wall / thousands, 5),
            "broker_rss_per_1k_devices_MB": round((rss_after - rss_before) / thousands, 1),
            "broker_connect_cpu_ms": round(connect_cpu / devices * 1e3, 3),
        }
    finally:
        for bell in bells:
            bell.close()
        await asyncio.to_thread(broker.stop)


async def broker_message_cost(work: Path, messages: int) -> dict:
    """The broker's CPU per relayed message: a client publishes ``messages`` requests of an event's
    size (2,171 bytes, an event to a hybrid owner) at QoS 1 into a doorbell's inbox, the doorbell
    (subscribed at QoS 1, persistent session) takes them all; broker CPU over the run, per message
    (each counts twice at the broker: in from the sender, out to the doorbell, with their acks)."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client_keys = KeyBundle.generate("x25519")
    client_id = key_id(client_keys.signing_key.public_key())
    broker = MosquittoBroker(work / "load-broker", devices=["loaddoorbell"], clients=[client_id])
    await asyncio.to_thread(broker.start)
    try:
        pid = broker.pid
        assert pid is not None
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = 3600

        def login(name: str, port: int, **extra: object) -> aiomqtt.Client:
            return aiomqtt.Client(
                broker.host,
                port,
                username=name,
                password=broker.credentials(name).password,
                identifier=name,
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=broker.tls_context(),
                max_queued_outgoing_messages=0,
                **extra,  # type: ignore[arg-type]
            )

        payload = secrets.token_bytes(2171)
        inbox = f"doorward/v1/dev/loaddoorbell/in/{client_id}"
        async with (
            login(
                "loaddoorbell", broker.device_port, clean_start=False, properties=connect
            ) as bell,
            login(client_id, broker.client_port) as sender,
        ):
            await bell.subscribe("doorward/v1/dev/loaddoorbell/in/+", qos=1)

            got = 0
            moved = asyncio.Event()

            async def take() -> None:
                nonlocal got
                async for _ in bell.messages:
                    got += 1
                    moved.set()
                    if got == messages:
                        return

            taking = asyncio.ensure_future(take())
            cpu_before, started = _cpu_s(pid), time.monotonic()
            # QoS 1 in flight at once, and never more than 500 ahead of the doorbell: the
            # broker keeps at most 1000 for a session (max_queued_messages) and drops the rest.
            window = asyncio.Semaphore(64)
            sent = 0

            async def send() -> None:
                nonlocal sent
                async with window:
                    while sent - got >= 500:
                        moved.clear()
                        await moved.wait()
                    sent += 1
                    await sender.publish(inbox, payload, qos=1)

            await asyncio.gather(*(send() for _ in range(messages)))
            async with asyncio.timeout(120):
                await taking
            cpu, wall = _cpu_s(pid) - cpu_before, time.monotonic() - started
            delivered = got
        if delivered < messages:  # the session's queue (max_queued_messages) overflowed
            print(f"note: {messages - delivered} of {messages} were dropped", file=sys.stderr)
        return {
            "broker_messages": messages,
            "broker_messages_delivered": delivered,
            "broker_cpu_us_per_message": round(cpu / (messages + delivered) * 2e6, 1),
            "broker_messages_per_s_seen": round(messages / wall),
        }
    finally:
        await asyncio.to_thread(broker.stop)


async def event_latency(presses: int, fps: int) -> dict:
    """A press to the owner's decrypted event, from ``bench/_relay_events.py``."""
    from _relay_events import relay_event_latency  # type: ignore[import-not-found]

    result = await relay_event_latency(presses=presses, fps=fps)
    return {
        "event_latency_p50_ms": result["press_p50_ms"],
        "event_latency_p95_ms": result["press_p95_ms"],
        "event_relay_share_p95_ms": result["bus_p95_ms"],
        "event_camera_fps": result["fps"],
    }


async def download_throughput(mib: int) -> dict:
    """A segment download through the relay against direct HTTPS, from ``bench/_relay_bodies.py``
    (its own device, broker and event loop, in a thread)."""
    from _relay_bodies import relay_vs_direct  # type: ignore[import-not-found]

    result = await asyncio.to_thread(relay_vs_direct, mib=mib)
    return {
        "download_relay_vs_direct": result["relay_vs_direct"],
        "download_relay_mib_per_s": result["relay_mib_per_s"],
        "download_direct_mib_per_s": result["direct_mib_per_s"],
        "download_mib": result["download_mib"],
    }


async def main_async(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="doorward-relay-bench-") as tmp:
        work = Path(tmp)
        result: dict = {}
        result.update(await rtt_and_rss(work, args.calls))
        print(f"relay rtt: {result}", file=sys.stderr)
        result.update(await event_latency(args.presses, args.fps))
        result.update(await download_throughput(args.download_mib))
        result.update(await broker_message_cost(work, args.messages))
        result.update(await idle_doorbells(work, args.devices, args.idle_seconds, args.keepalive))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--presses", type=int, default=50)
    parser.add_argument("--fps", type=int, default=15, help="the event bench's camera rate")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--download-mib", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--keepalive", type=int, default=60)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if not args.json:
        for name, value in result.items():
            print(f"{name:32} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
