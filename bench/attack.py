"""A recording doorbell while strangers on the LAN hold 1,000 connections against it.

    python bench/attack.py [--json] [--seconds 20] [--connections 1000] [--nofile 1024]

A real ``doorward serve`` runs in a subprocess with ``RLIMIT_NOFILE`` set to ``--nofile`` (soft
and hard; 0 keeps this process's limits): a simulated 640x360 camera at 15 fps, rung every 3 s
so a new clip (new files) starts every few seconds, one owner paired before it starts. The run
has two phases of ``--seconds`` each, measured the same way:

1. the anchor, no attack;
2. the attack: an attacker process, from ``--addresses`` loopback addresses (127.0.0.2 and up),
   holds ``--connections`` connections, reopening each one the device closes: a third idle TCP
   connections that never start TLS, a third TLS connections that send half a request head, a
   third TLS connections that send a well-formed but unknown-key signed ``POST /requests`` head
   and then its body one byte every 2 s (slow body).

Throughout both phases the owner (from 127.0.0.1) calls a signed ``GET /health`` on a new
connection (a new TLS handshake each time) every 100 ms.

- ``owner_health_p99_ms`` (anchor) and ``owner_health_p99_ms_under_attack``: the p99 latency of
  those calls, a failed call counting as its 10 s timeout; ``owner_health_p99_ratio`` is attack
  over anchor; ``owner_health_errors_under_attack`` the failed calls. Goal <= 1000 ms.
- ``segments_lost_under_attack``: segments and clips the pipeline could not write during the
  attack (``/metrics`` errors; each refusal loses at least one segment). Goal 0.
- ``frames_dropped_under_attack``: frames the camera source dropped (``/metrics``). Goal 0. The
  simulated camera never drops a frame, it delivers late instead: ``frames_behind_under_attack``
  is how many frames short of the wall clock's count the pipeline was at the end of the attack.
- ``rss_growth_MB_under_attack``: the device's peak RSS during the attack minus its RSS just
  before it (``/proc/PID/status``). Goal <= 50.
- ``log_growth_MB_under_attack``: what the device wrote to its log during the attack. Goal <= 1.
- ``attack_*``: the attacker's side: connections opened, the mean number held open at once, and
  how many the device closed or refused.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

_SELF = Path(__file__).resolve()
_REPO = _SELF.parent.parent
sys.path.insert(0, str(_REPO))

from bench._process import stop_process  # noqa: E402
from crypto.keys import KeyBundle  # noqa: E402
from crypto.tls import client_context  # noqa: E402

if TYPE_CHECKING:
    from hub.client import DoorwardClient

_HOST = "127.0.0.1"
_FPS = 15
_PROBE_EVERY_S = 0.1
_PROBE_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 60.0
_SLOW_BODY_BYTES = 8000
_DRIP_EVERY_S = 2.0
_REOPEN_AFTER_S = 0.1

_SCENE = """[camera]
width = 640
height = 360
fps = {fps}
seconds = {seconds}
seed = 11
realtime = true
{presses}
"""

_CONFIG = """pre_roll_s = 2.0
post_roll_s = 1.0
segment_s = 2.0
"""


@dataclass
class Device:
    """The device under test, as its owner knows it."""

    url: str
    port: int
    device_id: str
    fingerprint: str
    owner: KeyBundle
    pid: int
    log: Path

    def client(self) -> DoorwardClient:
        """A signed client of the owner's, on a new connection (a new TLS handshake)."""
        from hub.client import DoorwardClient

        return DoorwardClient(
            self.url,
            fingerprint=self.fingerprint,
            device_id=self.device_id,
            key=self.owner.signing_key,
            timeout_s=_PROBE_TIMEOUT_S,
        )


# -- the owner ------------------------------------------------------------------------------------


async def _probe(device: Device, latencies: list[float], errors: list[str]) -> None:
    """One signed GET /health on a new connection."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            async with device.client() as phone:
                await phone.health()
        latencies.append(time.perf_counter() - started)
    except Exception as exc:  # every failure counts, whatever it is
        errors.append(type(exc).__name__)
        latencies.append(_PROBE_TIMEOUT_S)


async def _owner_phase(device: Device, seconds: float) -> dict[str, Any]:
    """Probe /health for ``seconds`` while sampling the device's RSS; metrics before and after."""
    latencies: list[float] = []
    errors: list[str] = []
    rss: list[int] = []
    before, before_s = await _metrics(device)
    deadline = time.monotonic() + seconds
    probes: set[asyncio.Task[None]] = set()
    while time.monotonic() < deadline:
        task = asyncio.ensure_future(_probe(device, latencies, errors))
        probes.add(task)
        task.add_done_callback(probes.discard)
        rss.append(_rss_bytes(device.pid))
        await asyncio.sleep(_PROBE_EVERY_S)
    await asyncio.gather(*probes)
    after, after_s = await _metrics(device)
    expected_frames = round(_FPS * (after_s - before_s))
    ms = sorted(x * 1000 for x in latencies)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "probes": len(ms),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "rss_peak": max(rss),
        "segments_lost": after["errors"] - before["errors"],
        "segments": after["segments"] - before["segments"],
        "frames_dropped": after["dropped_frames"] - before["dropped_frames"],
        "frames_behind": max(0, expected_frames - (after["frames"] - before["frames"])),
    }


async def _metrics(device: Device) -> tuple[dict[str, int], float]:
    """The camera's counters and when they were read (the middle of the call; retried: the
    device may be busy right after an attack)."""
    for _ in range(30):
        try:
            async with device.client() as phone:
                asked = time.monotonic()
                counters = dict((await phone.metrics())["cameras"]["front"])
                return counters, (asked + time.monotonic()) / 2
        except Exception:  # retried, then raised below
            await asyncio.sleep(1.0)
    raise RuntimeError("the device did not answer /metrics for 30 s")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# -- the attacker (a process of its own) ----------------------------------------------------------


def _source(n: int) -> str:
    return f"127.0.{(n + 2) // 256}.{(n + 2) % 256}"


class _Attack:
    """Holds connections of one kind from one address, reopening each one that is closed."""

    def __init__(self, port: int, fingerprint: str, device_id: str, deadline: float) -> None:
        self.port = port
        self.context: ssl.SSLContext = client_context(fingerprint)
        self.device_id = device_id
        self.deadline = deadline
        self.opened = 0
        self.failed = 0
        self.closed_by_device = 0
        self.held = 0
        self.held_samples: list[int] = []

    async def hold(self, kind: str, source: str) -> None:
        while time.monotonic() < self.deadline:
            try:
                async with asyncio.timeout(10):
                    reader, writer = await asyncio.open_connection(
                        _HOST,
                        self.port,
                        ssl=None if kind == "idle" else self.context,
                        local_addr=(source, 0),
                    )
            except (OSError, TimeoutError, ssl.SSLError):
                self.failed += 1
                await asyncio.sleep(_REOPEN_AFTER_S)
                continue
            self.opened += 1
            self.held += 1
            try:
                await self._use(kind, reader, writer)
                self.closed_by_device += 1
            except (OSError, ssl.SSLError):
                self.closed_by_device += 1
            except TimeoutError:
                pass  # the attack is over
            finally:
                self.held -= 1
                writer.transport.abort()
            await asyncio.sleep(_REOPEN_AFTER_S)

    async def _use(
        self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Do what ``kind`` does until the device closes the connection."""
        left = self.deadline - time.monotonic()
        async with asyncio.timeout(max(0.0, left)):
            if kind == "half":
                writer.write(b"GET /health HTTP/1.1\r\nHost: doorbell\r\nX-Waiting: ")
            elif kind == "slow":
                writer.write(self._slow_head())
                while not reader.at_eof():
                    writer.write(b"x")
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_DRIP_EVERY_S):
                            if await reader.read(65536) == b"":
                                return
                return
            while await reader.read(65536):
                pass

    def _slow_head(self) -> bytes:
        """A ``POST /requests`` head signed by a fresh key: well formed, so the device reads
        its (small) body, which never finishes."""
        from hub.wire.httpsig import sign_http_request

        stranger = KeyBundle.generate("x25519")
        url = f"https://{_HOST}:{self.port}/requests"
        headers = sign_http_request(
            "POST",
            url,
            b"x" * _SLOW_BODY_BYTES,
            key=stranger.signing_key,
            key_id=stranger.key_id,
            tag=self.device_id,
            created_s=int(time.time()),
            nonce=secrets.token_urlsafe(18),
        )
        lines = [
            "POST /requests HTTP/1.1",
            f"Host: {_HOST}:{self.port}",
            "Content-Type: application/jose",
            f"Content-Length: {_SLOW_BODY_BYTES}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _attacker(args: argparse.Namespace) -> None:
    """The attacker process: hold the connections until ``--seconds`` are over."""
    deadline = time.monotonic() + args.seconds
    attack = _Attack(args.port, args.fingerprint, args.device_id, deadline)
    kinds = ("idle", "half", "slow")
    workers = [
        asyncio.ensure_future(attack.hold(kinds[i % 3], _source(i % args.addresses)))
        for i in range(args.connections)
    ]

    async def sample() -> None:
        while time.monotonic() < deadline:
            attack.held_samples.append(attack.held)
            await asyncio.sleep(0.5)

    sampling = asyncio.ensure_future(sample())
    print("attacker: started", flush=True)
    await asyncio.gather(*workers, return_exceptions=True)
    sampling.cancel()
    held = attack.held_samples[len(attack.held_samples) // 4 :] or [0]  # after the ramp-up
    print(
        json.dumps(
            {
                "opened": attack.opened,
                "failed_to_open": attack.failed,
                "closed_by_device": attack.closed_by_device,
                "held_mean": round(statistics.mean(held), 1),
                "held_max": max(attack.held_samples or [0]),
            }
        ),
        flush=True,
    )


# -- the run --------------------------------------------------------------------------------------


def _paired(data: Path) -> tuple[KeyBundle, str, str]:
    from hub.server.state import Device as DeviceState

    owner = KeyBundle.generate("x25519")
    state = DeviceState.open(data)
    try:
        state.owners.add(owner.public(), name="bench", now=int(time.time()))
        return owner, state.identity.device_id, state.fingerprint
    finally:
        state.close()


async def _start(
    work: Path, nofile: int, seconds: float
) -> tuple[asyncio.subprocess.Process, Device]:
    data = work / "data"
    owner, device_id, fingerprint = _paired(data)
    presses = "".join(f"\n[[press]]\nat_s = {at}\n" for at in range(2, int(seconds), 3))
    scene = work / "scene.toml"
    scene.write_text(_SCENE.format(fps=_FPS, seconds=seconds, presses=presses))
    config = work / "serve.toml"
    config.write_text(_CONFIG)
    log = work / "serve.log"

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli.cmd_serve", "--config", str(config),
            "--data", str(data), "--camera", f"front=simulated:{scene}",
            "--host", _HOST, "--port", "0", "--no-advertise",
            stdout=subprocess.PIPE, stderr=err, cwd=_REPO, env=env, preexec_fn=limit,
        )  # fmt: skip
    assert process.stdout is not None
    line = b""
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not line.startswith(b"doorward: serving "):
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(log.read_text(errors="replace")[-3000:])
    url = line.split()[2].decode()
    port = int(url.rsplit(":", 1)[1])
    return process, Device(url, port, device_id, fingerprint, owner, process.pid, log)


async def run(seconds: float, connections: int, addresses: int, nofile: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="doorward-attack-bench-") as tmp:
        work = Path(tmp)
        process, device = await _start(work, nofile, seconds * 2 + 120)
        try:
            await asyncio.sleep(3.0)  # the camera is recording, clips have started
            anchor = await _owner_phase(device, seconds)
            rss_before = _rss_bytes(device.pid)
            log_before = device.log.stat().st_size
            attacker = await asyncio.create_subprocess_exec(
                sys.executable, str(_SELF), "--attacker", "--port", str(device.port),
                "--fingerprint", device.fingerprint, "--device-id", device.device_id,
                "--connections", str(connections), "--addresses", str(addresses),
                "--seconds", str(seconds + 5),
                stdout=subprocess.PIPE, cwd=_REPO,
            )  # fmt: skip
            assert attacker.stdout is not None
            await attacker.stdout.readline()  # started
            await asyncio.sleep(5.0)  # the attacker opens its connections
            attacked = await _owner_phase(device, seconds)
            attack = json.loads((await attacker.stdout.readline()) or b"{}")
            await attacker.wait()
            log_after = device.log.stat().st_size
        finally:
            await stop_process(process)
        serve_log = device.log.read_text(errors="replace")
    rss_growth = max(0, attacked["rss_peak"] - rss_before)
    return {
        "seconds": seconds,
        "connections": connections,
        "addresses": addresses,
        "nofile": nofile or resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "camera": f"360p{_FPS}",
        "owner_health_p99_ms": anchor["p99_ms"],
        "owner_health_p50_ms": anchor["p50_ms"],
        "owner_health_p99_ms_under_attack": attacked["p99_ms"],
        "owner_health_p50_ms_under_attack": attacked["p50_ms"],
        "owner_health_p99_ratio": round(attacked["p99_ms"] / max(anchor["p99_ms"], 0.1), 2),
        "owner_health_probes_under_attack": attacked["probes"],
        "owner_health_errors_under_attack": attacked["errors"],
        "owner_health_error_kinds_under_attack": attacked["error_kinds"],
        "segments_under_attack": attacked["segments"],
        "segments_lost_under_attack": attacked["segments_lost"],
        "segments_lost_anchor": anchor["segments_lost"],
        "frames_dropped_under_attack": attacked["frames_dropped"],
        "frames_behind_under_attack": attacked["frames_behind"],
        "frames_behind_anchor": anchor["frames_behind"],
        "rss_growth_MB_under_attack": round(rss_growth / 1e6, 1),
        "log_growth_MB_under_attack": round((log_after - log_before) / 1e6, 3),
        "emfile_in_log": "Too many open files" in serve_log,
        "guard_summaries": [
            line.split(" guard.summary ", 1)[1]
            for line in serve_log.splitlines()
            if " guard.summary " in line
        ],
        **{f"attack_{key}": value for key, value in attack.items()},
        "serve_exit": process.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=1000, help="connections held")
    parser.add_argument("--addresses", type=int, default=50, help="attacker source addresses")
    parser.add_argument(
        "--nofile", type=int, default=1024, help="the device's descriptor limit (0: inherit)"
    )
    parser.add_argument("--attacker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    parser.add_argument("--device-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # it holds --connections sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(_attacker(args))
        return 0
    result = asyncio.run(run(args.seconds, args.connections, args.addresses, args.nofile))
    if not args.json:
        for key, value in result.items():
            print(f"{key:>40}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
