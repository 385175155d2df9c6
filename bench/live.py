"""Live view on loopback: glass-to-glass latency, the device CPU each extra viewer costs, and
talking back through the doorbell's speaker.

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
- ``talk_latency_p50_ms`` / ``talk_latency_p95_ms``: one owner watches and talks in one session
  (an offer that sends Opus, as ``doorward owner live --talk`` makes), sending tone bursts
  (``bench/_talk.py``: 200 ms of 1 kHz every 500 ms); from the moment a burst's first 20 ms is
  handed to the owner's encoder to the moment the device's simulated speaker plays its first loud
  sample (the speaker stamps each chunk with when it starts playing, after its own short queue).
  Both processes read ``time.monotonic()``, one clock on one machine. The session's first burst
  (set-up) is left out; ``talk_bursts_heard`` of ``talk_bursts_sent`` arrived. Goal: p95 <= 150.
- ``talk_cpu_share``: in that session the owner is alternately silent (sending nothing, as the
  page does between presses) and talking, four windows of each of about ``seconds / 4``; device
  CPU per second while talking minus while silent, in cores: receiving, decoding and playing the
  owner's sound, with the camera, the viewer and the machine's other load the same on both sides
  of the subtraction (separate sessions measured minutes apart differed by more than the cost
  itself on a shared machine). Goal: <= 0.03.

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

from bench._talk import (  # noqa: E402
    BurstTone,
    match_onsets,
    speaker_onsets,
    talking_session,
)
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
    """The device side: pipeline + relay + live view + the camera's simulated speaker; prints
    one JSON line when frames flow, then answers ``onsets`` lines on stdin with the speaker's
    burst onsets (one JSON line each) until stdin closes."""
    from aiohttp import web

    from crypto.keys import PublicKeyBundle
    from device import CameraPipeline
    from hardware import microphone_of
    from hardware.sim import SimulatedCamera, parse_scenario
    from hub.server.app import create_app
    from hub.server.config import ServeConfig
    from hub.server.deps import CameraInfo
    from hub.server.live.relay import FrameRelay, LiveConfig
    from hub.server.routes.live import LiveSetup
    from hub.server.speakers import Speakers
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
    speaker = camera.speaker
    # The talk CPU windows pause the owner's sound for seconds at a time; a paused phone would
    # otherwise give the speaker back after LiveConfig's default 2 s of silence.
    live = LiveSetup(relay, config=LiveConfig(talk_silence_s=3600.0))
    app = create_app(deps, live_view=live, speakers=Speakers({"front": speaker}))
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
    loop = asyncio.get_running_loop()
    try:
        while await loop.run_in_executor(None, sys.stdin.readline):  # until EOF
            played = [(p.at, p.samples) for p in speaker.played]
            print(json.dumps(speaker_onsets(played, speaker.sample_rate)), flush=True)
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
                tone = BurstTone()
                quiet, talking = await talk_rates(api, tone, seconds)
                process.stdin.write(b"onsets\n")
                await process.stdin.drain()
                heard = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
                three = await cpu_rate(3, None)
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
    # The first second includes connection set-up and the first keyframe: not steady state.
    steady = sorted(latencies[15:] or latencies)
    first_cost = max(one - idle, 1e-9)
    # The first burst goes out while the session is still being set up: not steady state.
    talk = sorted(match_onsets(tone.onsets[1:], heard, within_s=0.45))
    return {
        "latency_p50_ms": round(float(np.percentile(steady, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(steady, 95)), 1),
        "latency_frames": len(steady),
        "device_cpu_idle": round(idle, 3),
        "device_cpu_one_viewer": round(one, 3),
        "device_cpu_three_viewers": round(three, 3),
        "cpu_per_extra_viewer_ratio": round((three - one) / 2 / first_cost, 2),
        "talk_latency_p50_ms": _percentile_ms(talk, 50),
        "talk_latency_p95_ms": _percentile_ms(talk, 95),
        "talk_bursts_sent": len(tone.onsets) - 1,
        "talk_bursts_heard": len(talk),
        "device_cpu_one_viewer_quiet": round(quiet, 3),
        "device_cpu_one_viewer_talking": round(talking, 3),
        "talk_cpu_share": round(talking - quiet, 4),
        "seconds_per_phase": seconds,
        "viewer_codec": codec or "any (H.264 chosen)",
        "audio": audio,
    }


async def talk_rates(
    api: Any, tone: BurstTone, seconds: float, windows: int = 4
) -> tuple[float, float]:
    """One owner watches with ``tone`` as its microphone for about ``2 * seconds``, alternately
    silent and talking (``windows`` of each, silent first); the device's CPU per second in
    each state over its windows: (silent, talking). Alternating in one session keeps the
    camera, the viewer and the machine's other load the same for both."""
    # Each window is whole burst periods, less a little: talk stops in the silence after a
    # burst, never in one (what is still in flight then would join the next window's first).
    window_s = max(1, round(seconds / windows / tone.period_s)) * tone.period_s - 0.1
    spent = {False: 0.0, True: 0.0}
    lasted = {False: 0.0, True: 0.0}
    tone.pause()
    async with talking_session(api.live_offer, tone):
        for window in range(2 * windows):
            talking = window % 2 == 1
            if talking:
                tone.resume()
            else:
                tone.pause()
            before = (await api.metrics())["cpu_s"]
            started = time.monotonic()
            await asyncio.sleep(window_s)
            spent[talking] += (await api.metrics())["cpu_s"] - before
            lasted[talking] += time.monotonic() - started
    return spent[False] / lasted[False], spent[True] / lasted[True]


def _percentile_ms(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else None


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
