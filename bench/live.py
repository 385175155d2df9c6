"""Live view on loopback: glass-to-glass latency and the device CPU each extra viewer costs.

    python bench/live.py [--json] [--seconds S] [--codec video/VP8] [--audio]

A device process records a real-time simulated camera (640x360, 15 fps) through the real pipeline
and serves live view; this process is the owners' phones (aiortc clients).

- ``latency_p50_ms`` / ``latency_p95_ms``: from the capture time the simulated camera draws into
  each frame (its strip: milliseconds since the camera started, plus the wall time of its start,
  which the device prints) to the moment the receiving client has decoded that frame. Both
  processes read the same wall clock. Goal: p95 <= 150 ms.
- ``cpu_per_extra_viewer_ratio``: device CPU (its ``/metrics`` cpu_s) per second with one viewer
  minus with none is the cost of one viewer; with three viewers, (cost - one viewer's cost) / 2 is
  the cost of each extra one; the figure is extra / first. The first viewer starts the camera's
  single shared encode in the viewers' codec (H.264 by default, VP8 with ``--codec video/VP8``)
  and each extra one adds only packetization and SRTP; 1.0 would mean an encode per viewer.
  Capture and recording are never repeated. With ``--audio`` the camera has a microphone and
  every viewer also gets its sound (one Opus encode for all).

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

from crypto.keys import KeyBundle  # noqa: E402
from hardware.sim import read_strip  # noqa: E402

SCENARIO = """[camera]
width = 640
height = 360
fps = 15
seconds = 3600
seed = 7
realtime = true
"""


async def run_device(data_dir: Path, owner_json: str, audio: bool) -> None:
    """The device side: pipeline + relay + live view; prints one JSON line when frames flow."""
    from aiohttp import web

    from crypto.keys import PublicKeyBundle
    from device import CameraPipeline
    from hardware import microphone_of
    from hardware.sim import SimulatedCamera, parse_scenario
    from hub.server.app import create_app
    from hub.server.config import ServeConfig
    from hub.server.deps import CameraInfo
    from hub.server.live.relay import FrameRelay
    from hub.server.routes.live import LiveSetup
    from hub.server.state import Device

    device = Device.open(data_dir)
    device.owners.add(
        PublicKeyBundle.from_json(json.loads(owner_json)), name="bench", now=int(time.time())
    )
    scenario = SCENARIO + ("audio = true\n" if audio else "")
    camera = SimulatedCamera(parse_scenario(scenario, "bench.toml"), name="front")
    info = CameraInfo("front", "simulated", 640, 360, 15.0, "raw")
    relay = FrameRelay()
    deps = device.deps({"front": info}, ServeConfig(data_dir=data_dir))
    app = create_app(deps, live_view=LiveSetup(relay))
    hook = relay.add_camera("front", microphone=microphone_of(camera))
    first = asyncio.get_running_loop().create_future()

    def on_frame(frame: Any, result: Any) -> None:
        if not first.done():
            first.set_result(frame.wall_s - frame.pts_s)
        hook(frame, result)

    pipeline = CameraPipeline(
        "front", camera, device.store, device.owners.recipients, on_frame=on_frame
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    task = asyncio.ensure_future(pipeline.run())
    start_wall = await first
    line = {
        "url": f"https://127.0.0.1:{port}",
        "fingerprint": device.fingerprint,
        "device_id": device.identity.device_id,
        "start_wall": start_wall,
    }
    print(json.dumps(line), flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
        device.close()


async def bench(seconds: float, codec: str | None, audio: bool) -> dict[str, Any]:
    from hub.client import DoorwardClient
    from hub.client.live import receive_live

    owner = KeyBundle.generate("x25519")
    with tempfile.TemporaryDirectory() as tmp:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--device-child",
            tmp,
            json.dumps(owner.public().to_json()),
            "audio" if audio else "",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stdin is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            info = json.loads(line)
            start_wall = float(info["start_wall"])
            async with DoorwardClient(
                info["url"],
                fingerprint=info["fingerprint"],
                device_id=info["device_id"],
                key=owner.signing_key,
                timeout_s=60,
            ) as api:

                async def cpu_rate(viewers: int, latencies: list[float] | None) -> float:
                    def on_frame(picture: av.VideoFrame) -> None:
                        now = time.time()
                        luma = np.asarray(picture.to_ndarray(format="gray"), dtype=np.uint8)
                        reading = read_strip(luma)
                        if reading is not None and latencies is not None:
                            latencies.append((now - start_wall) * 1000 - reading.timestamp_ms)

                    before = (await api.metrics())["cpu_s"]
                    started = time.monotonic()
                    if viewers == 0:
                        await asyncio.sleep(seconds)
                    else:
                        await asyncio.gather(
                            *(
                                receive_live(
                                    api.live_offer, on_frame=on_frame, seconds=seconds, codec=codec
                                )
                                for _ in range(viewers)
                            )
                        )
                    after = (await api.metrics())["cpu_s"]
                    return float(after - before) / (time.monotonic() - started)

                latencies: list[float] = []
                idle = await cpu_rate(0, None)
                one = await cpu_rate(1, latencies)
                three = await cpu_rate(3, None)
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
    # The first second includes connection set-up and the first keyframe: not steady state.
    steady = sorted(latencies[15:] or latencies)
    first_cost = max(one - idle, 1e-9)
    return {
        "latency_p50_ms": round(float(np.percentile(steady, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(steady, 95)), 1),
        "latency_frames": len(steady),
        "device_cpu_idle": round(idle, 3),
        "device_cpu_one_viewer": round(one, 3),
        "device_cpu_three_viewers": round(three, 3),
        "cpu_per_extra_viewer_ratio": round((three - one) / 2 / first_cost, 2),
        "seconds_per_phase": seconds,
        "viewer_codec": codec or "any (H.264 chosen)",
        "audio": audio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--codec", help="what the viewers accept, e.g. video/VP8 (default: any)")
    parser.add_argument("--audio", action="store_true", help="the camera has a microphone")
    parser.add_argument("--device-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device_child:
        data_dir, owner_json, audio = args.device_child
        asyncio.run(run_device(Path(data_dir), owner_json, audio == "audio"))
        return
    result = asyncio.run(bench(args.seconds, args.codec, args.audio))
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
