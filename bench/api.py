"""The signed HTTPS API under load while a simulated 720p camera records, its download throughput
against a plain static-file server, and how fast ``doorward serve`` starts.

    python bench/api.py [--json] [--seconds 30] [--clients 1,50,200] [--fps 15]

A real ``doorward serve`` runs in a subprocess (camera ``simulated`` at 1280x720, rung every 20 s
so it records clips while the clients work); one owner is paired before it starts and one 720p
clip is recorded beforehand so there are segments to fetch.

- ``startup_s``: from launching ``doorward serve`` until it has answered a signed ``GET /health``
  over HTTPS *and* a zeroconf browser (started beforehand, in this process) has resolved its
  record; ``startup_https_s`` and ``startup_discoverable_s`` are the two parts. The device is
  launched ``_STARTUP_RUNS`` times (the last one stays up for the rest) and the launch with the
  median ``startup_s`` is reported; ``startup_runs_s`` lists them all. What the device imports
  is byte-compiled first, into a cache in the bench's temporary directory, as an installed
  package is: a launch does not recompile the device's modules even where
  PYTHONDONTWRITEBYTECODE is set. Goal <= 1.5.
- For each N in ``--clients``: N concurrent signed owner clients, each with its own pinned TLS
  session, loop "list clips, fetch one whole segment" for ``--seconds``. ``p50_ms_N`` and
  ``p99_ms_N`` are per-request latencies (clients run in this one process, so at large N they
  include client-side queueing), ``rps_N`` requests per second, ``errors_N`` failed requests and
  ``dropped_frames_N`` the camera frames the device dropped meanwhile (``/metrics`` delta).
  Goal at 200: 0 errors, 0 dropped frames.
- ``download_vs_static``: bytes per second of one client fetching the stored segments over the
  signed API, over the same from a plain aiohttp static-file server (a subprocess, the device's
  certificate, TLS 1.3) serving the same files in the same run; the two sides take turns,
  ``_DOWNLOAD_ROUNDS`` runs each, and each side's best run counts (the machine is shared: more
  turns make a quiet moment for both likelier). Goal >= 0.7.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

_SELF = Path(__file__).resolve()
_REPO = _SELF.parent.parent
sys.path.insert(0, str(_REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench._process import stop_process  # noqa: E402
from crypto.keys import KeyBundle  # noqa: E402
from crypto.tls import client_context, server_context  # noqa: E402
from device import CameraPipeline, RecorderConfig  # noqa: E402
from hardware.sim import SimulatedCamera, parse_scenario  # noqa: E402
from hub.client import ApiError, DoorwardClient  # noqa: E402
from hub.server.state import Device  # noqa: E402
from hub.wire.discovery import DiscoveredDevice, browse  # noqa: E402

_START_TIMEOUT_S = 60.0
_DISCOVER_TIMEOUT_S = 20.0
_RING_EVERY_S = 20
_DOWNLOAD_ROUNDS = 4
_STARTUP_RUNS = 3
# Imports everything `doorward serve` loads at start-up, leaving their bytecode in the cache.
_COMPILE = "import hub.cli.cmd_serve, hub.server.serve, hub.server.runtime"

_SCENE = """
[camera]
width = 1280
height = 720
fps = {fps}
seconds = {seconds}
seed = 5
start = {start}
{presses}
"""


def _scenario(path: Path, *, fps: int, seconds: float, presses: list[float]) -> Path:
    rings = "".join(f"\n[[press]]\nat_s = {at:g}\n" for at in presses)
    # Recent enough that retention keeps it (virtual time counts from here).
    start = datetime.fromtimestamp(int(time.time()) - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(_SCENE.format(fps=fps, seconds=seconds, start=start, presses=rings))
    return path


@dataclass
class Bench:
    """The device under test: its data, owner, address and stored segments."""

    data: Path
    owner: KeyBundle
    device_id: str
    fingerprint: str
    segments: dict[str, Path] = field(default_factory=dict)  # id -> file
    url: str = ""
    env: dict[str, str] | None = None  # for doorward serve (None: this process's)

    def client(self) -> DoorwardClient:
        return DoorwardClient(
            self.url,
            fingerprint=self.fingerprint,
            device_id=self.device_id,
            key=self.owner.signing_key,
            timeout_s=120.0,
        )


async def _prepare(work: Path, fps: int) -> Bench:
    """Create the device, pair the owner and record one clip of 720p (virtual time)."""
    data = work / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    try:
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        scene = _scenario(work / "pre.toml", fps=fps, seconds=5.0, presses=[0.5])
        source = SimulatedCamera(parse_scenario(scene.read_text(), scene.name), realtime=False)
        pipeline = CameraPipeline(
            "front",
            source,
            device.store,
            device.owners.recipients,
            config=RecorderConfig(pre_roll_s=1.0, post_roll_s=2.0, segment_s=2.0),
            button=source.button,
        )
        await pipeline.run()
        bench = Bench(data, owner, device.identity.device_id, device.fingerprint)
        for clip in device.store.list_clips():
            for segment in device.store.list_segments(clip.clip_id):
                bench.segments[segment.segment_id] = segment.path
    finally:
        device.close()
    if not bench.segments:
        raise RuntimeError("the pre-recorded clip has no segments")
    return bench


async def _start_serve(
    bench: Bench, scene: Path, log: IO[bytes]
) -> tuple[asyncio.subprocess.Process, dict[str, float]]:
    """Launch ``doorward serve``; time HTTPS and zeroconf discovery from the launch."""

    async def browse_timed() -> tuple[list[DiscoveredDevice], float]:
        found = await browse(
            _DISCOVER_TIMEOUT_S, interfaces=["127.0.0.1"], until_found=[bench.device_id]
        )
        return found, time.monotonic()

    browser = asyncio.ensure_future(browse_timed())
    launched = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli.cmd_serve", "--data", str(bench.data), "--host", "127.0.0.1",
        "--port", "0", "--camera", f"front=simulated:{scene}",
        stdout=subprocess.PIPE, stderr=log, cwd=_REPO, env=bench.env,
    )  # fmt: skip
    assert process.stdout is not None
    line = b""
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not line.startswith(b"doorward: serving "):
            line = await process.stdout.readline()
            if not line:
                code = await process.wait()
                raise RuntimeError(f"doorward serve exited with status {code} before serving")
    bench.url = line.split()[2].decode()
    async with bench.client() as phone:
        await phone.health()
    https_s = time.monotonic() - launched
    found, browsed = await browser
    discovered_s = browsed - launched
    times = {"startup_https_s": round(https_s, 3)}
    if any(d.device_id == bench.device_id for d in found):
        times["startup_discoverable_s"] = round(discovered_s, 3)
        times["startup_s"] = round(max(https_s, discovered_s), 3)
    return process, times


def _byte_compiled(work: Path) -> dict[str, str]:
    """An environment for ``doorward serve`` whose modules are compiled, as installed ones are."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    subprocess.run([sys.executable, "-c", _COMPILE], cwd=_REPO, env=env, check=True)
    return env


async def _start_serves(
    bench: Bench, scene: Path, log: IO[bytes]
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """Launch ``doorward serve`` ``_STARTUP_RUNS`` times; keep the last one running and report
    the launch with the median ``startup_s`` (a launch that was never discovered ranks last)."""
    runs: list[dict[str, float]] = []
    for attempt in range(_STARTUP_RUNS):
        serve, times = await _start_serve(bench, scene, log)
        runs.append(times)
        if attempt < _STARTUP_RUNS - 1:
            await stop_process(serve)
    ranked = sorted(runs, key=lambda times: times.get("startup_s", float("inf")))
    median: dict[str, Any] = dict(ranked[len(ranked) // 2])
    median["startup_runs_s"] = [times.get("startup_s") for times in runs]
    return serve, median


class _Sink:
    """A file-like object that counts bytes and keeps none."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


async def _timed(latencies: list[float], call: Awaitable[Any]) -> None:
    started = time.perf_counter()
    await call
    latencies.append(time.perf_counter() - started)


async def _load(bench: Bench, clients: int, seconds: float) -> dict[str, float]:
    """N owner clients listing clips and fetching segments until the time is up."""
    latencies: list[float] = []
    errors = 0
    segment_ids = sorted(bench.segments)
    deadline = time.monotonic() + seconds

    async def one(seed: int) -> None:
        nonlocal errors
        pick = random.Random(seed)
        async with bench.client() as phone:
            while time.monotonic() < deadline:
                try:
                    await _timed(latencies, phone.clips(limit=20))
                    segment_id = pick.choice(segment_ids)
                    await _timed(latencies, phone.download_segment(segment_id, _Sink()))  # type: ignore[arg-type]
                except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    errors += 1
                    print(f"bench.request_failed error={exc!r}", file=sys.stderr)

    async with bench.client() as phone:
        before = (await phone.metrics())["dropped_frames"]
        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(clients)))
        elapsed = time.monotonic() - started
        after = (await phone.metrics())["dropped_frames"]
    ms = sorted(x * 1000 for x in latencies) or [0.0]
    return {
        f"p50_ms_{clients}": round(statistics.median(ms), 2),
        f"p99_ms_{clients}": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        f"rps_{clients}": round(len(latencies) / elapsed, 1),
        f"errors_{clients}": errors,
        f"dropped_frames_{clients}": int(after - before),
    }


async def _rate(seconds: float, fetch: Callable[[], Awaitable[int]]) -> float:
    """Bytes per second of back-to-back ``fetch`` calls for about ``seconds``."""
    total = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        total += await fetch()
    return total / (time.monotonic() - started)


async def _download_vs_static(bench: Bench, static_url: str, seconds: float) -> dict[str, float]:
    ids = sorted(bench.segments)
    context = client_context(bench.fingerprint)
    best_api = best_static = 0.0
    async with bench.client() as phone, aiohttp.ClientSession() as plain:
        turn = {"api": 0, "static": 0}

        async def via_api() -> int:
            segment_id = ids[turn["api"] % len(ids)]
            turn["api"] += 1
            sink = _Sink()
            await phone.download_segment(segment_id, sink)  # type: ignore[arg-type]
            return sink.size

        async def via_static() -> int:
            segment_id = ids[turn["static"] % len(ids)]
            turn["static"] += 1
            rel = bench.segments[segment_id].relative_to(bench.data)
            size = 0
            async with plain.get(f"{static_url}/{rel.as_posix()}", ssl=context) as response:
                response.raise_for_status()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
            return size

        for _ in range(_DOWNLOAD_ROUNDS):
            best_api = max(best_api, await _rate(seconds, via_api))
            best_static = max(best_static, await _rate(seconds, via_static))
    return {
        "download_api_MBps": round(best_api / 1e6, 2),
        "download_static_MBps": round(best_static / 1e6, 2),
        "download_vs_static": round(best_api / best_static, 3),
    }


async def _start_static(bench: Bench) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(_SELF), "--serve-static", str(bench.data),
        stdout=subprocess.PIPE, cwd=_REPO,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(_START_TIMEOUT_S):
        line = await process.stdout.readline()
    if not line.startswith(b"static: "):
        raise RuntimeError("the static-file server did not start")
    return process, line.split()[1].decode()


def _serve_static(data: Path) -> None:
    """The baseline: aiohttp's static-file handler over TLS 1.3 with the device's certificate."""

    async def main() -> None:
        app = web.Application()
        app.router.add_static("/", data)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = server_context(data / "keys" / "device.crt", data / "keys" / "device.ed25519")
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        print(f"static: https://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def run(seconds: float, clients: list[int], fps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="doorward-api-bench-") as tmp:
        work = Path(tmp)
        bench = await _prepare(work, fps)
        bench.env = _byte_compiled(work)
        total_s = 60 + len(clients) * seconds * 1.5
        rings = [float(at) for at in range(2, int(total_s), _RING_EVERY_S)]
        scene = _scenario(work / "live.toml", fps=fps, seconds=total_s, presses=rings)
        result: dict[str, Any] = {"clients": clients, "seconds": seconds, "camera": f"720p{fps}"}
        log_path = work / "serve.log"
        with log_path.open("wb") as log:
            try:
                serve, times = await _start_serves(bench, scene, log)
            except RuntimeError:
                print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
                raise
            static: asyncio.subprocess.Process | None = None
            try:
                result.update(times)
                for n in clients:
                    result.update(await _load(bench, n, seconds))
                static, static_url = await _start_static(bench)
                result.update(await _download_vs_static(bench, static_url, min(3.0, seconds / 3)))
                result["segments"] = len(bench.segments)
                result["segment_bytes"] = sum(p.stat().st_size for p in bench.segments.values())
            finally:
                if static is not None:
                    await stop_process(static)
                await stop_process(serve)
        result["serve_exit"] = serve.returncode
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--seconds", type=float, default=30.0, help="load time per N")
    parser.add_argument("--clients", default="1,50,200", help="comma-separated client counts")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the 720p camera")
    parser.add_argument("--serve-static", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_static is not None:
        _serve_static(args.serve_static)
        return 0
    clients = [int(n) for n in args.clients.split(",")]
    result = asyncio.run(run(args.seconds, clients, args.fps))
    if not args.json:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
