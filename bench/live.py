"""Live view on loopback: glass-to-glass latency, the device CPU each extra viewer costs, and
talking back through the doorbell's speaker.

    python bench/live.py [--json] [--seconds S] [--codec video/VP8] [--audio]
                         [--width 1280 --height 720 --fps 30] [--breakdown] [--latency-only]

A device process records a real-time simulated camera (1280x720 at 30 fps unless ``--width``,
``--height`` and ``--fps`` say otherwise; the JSON names them) through the real pipeline and
serves live view; this process is the owners' phones (aiortc clients).

- ``latency_p50_ms`` / ``latency_p95_ms``: from the capture time the simulated camera draws into
  each frame (its strip: milliseconds since the camera started, plus the wall time of its start,
  which the device prints) to the moment the receiving client has decoded that frame. Both
  processes read the same wall clock. The first second is left out (set-up, first keyframe).
  Goal at 720p30: p95 <= 60 ms. The floor is about one frame interval plus the encode: aiortc's
  receiver hands a frame to its decoder only once the next frame's first packet arrives.
- ``breakdown_ms`` (with ``--breakdown``): p50 and p95 of each stage of a frame's way, in ms, over
  the frames every stage saw (see ``STAGES``): the camera handing the frame over after its
  capture time, the live relay getting it, waiting for and running the live encode, aiortc's
  sender taking the packet, the phone receiving its last RTP packet, the phone's jitter buffer
  releasing it, the phone decoding it. The stages add up to the latency; timing wrappers in
  each process (``time.time()``) stamp them, and the frames' way is otherwise unchanged.
  ``--latency-only`` measures latency and one viewer's CPU, and skips the talk and
  three-viewer phases.
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
import itertools
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
from hardware.sim import read_strip, strip_rows  # noqa: E402


def scenario(width: int, height: int, fps: int, audio: bool) -> str:
    """The simulated camera: a real-time scene of ``width`` x ``height`` at ``fps``."""
    return (
        f"[camera]\nwidth = {width}\nheight = {height}\nfps = {fps}\nseconds = 3600\n"
        f"seed = 7\nrealtime = true\n{'audio = true' if audio else ''}\n"
    )


async def run_device(data_dir: Path, owner_json: str, settings: dict[str, Any]) -> None:
    """The device side: pipeline + relay + live view + the camera's simulated speaker; prints
    one JSON line when frames flow, then answers lines on stdin until stdin closes: ``onsets``
    with the speaker's burst onsets, ``stamps`` with the per-frame times of ``--breakdown``
    (one JSON line each)."""
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

    width, height, fps = settings["width"], settings["height"], settings["fps"]
    device = Device.open(data_dir)
    device.owners.add(
        PublicKeyBundle.from_json(json.loads(owner_json)), name="bench", now=int(time.time())
    )
    text = scenario(width, height, fps, settings["audio"])
    camera = SimulatedCamera(parse_scenario(text, "bench.toml"), name="front")
    info = CameraInfo("front", "simulated", width, height, float(fps), "raw")
    relay = FrameRelay()
    stamps = _DeviceStamps(camera, relay) if settings["breakdown"] else None
    deps = device.deps({"front": info}, ServeConfig(data_dir=data_dir))
    speaker = camera.speaker
    # The talk CPU windows pause the owner's sound for seconds at a time; a paused phone would
    # otherwise give the speaker back after LiveConfig's default 2 s of silence.
    live = LiveSetup(relay, config=LiveConfig(talk_silence_s=3600.0))
    app = create_app(deps, live_view=live, speakers=Speakers({"front": speaker}))
    hook = relay.add_camera("front", microphone=microphone_of(camera))
    first = asyncio.get_running_loop().create_future()

    def on_capture(frame: Any) -> None:
        if not first.done():
            first.set_result(frame.wall_s - frame.pts_s)
        hook(frame)

    pipeline = CameraPipeline(
        "front",
        stamps.source if stamps is not None else camera,
        device.store,
        device.owners.recipients,
        on_capture=on_capture,
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
        while asked := await loop.run_in_executor(None, sys.stdin.readline):  # until EOF
            if asked.strip() == "stamps":
                print(json.dumps(stamps.take() if stamps is not None else {}), flush=True)
                continue
            played = [(p.at, p.samples) for p in speaker.played]
            print(json.dumps(speaker_onsets(played, speaker.sample_rate)), flush=True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
        device.close()


class _DeviceStamps:
    """``--breakdown`` on the device: the wall time (``time.time()``) at which each frame, by
    index, leaves the camera, reaches the live relay, starts and ends its live encode, and is
    handed to aiortc's sender (the track's ``recv`` returns it). Timing wrappers only: what
    they wrap runs as it would without them."""

    def __init__(self, camera: Any, relay: Any) -> None:
        from hub.server.live import feed, webrtc

        self._camera = camera
        self._fps = camera.scenario.camera.fps
        self.stages: dict[str, dict[int, float]] = {
            name: {} for name in ("captured", "yielded", "relayed", "encoding", "encoded", "sent")
        }
        stages = self.stages
        index_of = self._index_of
        push = relay.push

        def stamped_push(name: str, frame: Any) -> None:
            stages["relayed"][frame.index] = time.time()
            push(name, frame)

        relay.push = stamped_push
        encode = feed._Encoder.encode

        def stamped_encode(encoder: Any, frame: Any, pts: int, force: bool) -> Any:
            stages["encoding"][frame.index] = time.time()
            try:
                return encode(encoder, frame, pts, force)
            finally:
                stages["encoded"][frame.index] = time.time()

        feed._Encoder.encode = stamped_encode  # type: ignore[method-assign,assignment]
        recv = webrtc.PacketTrack.recv

        async def stamped_recv(track: Any) -> Any:
            packet = await recv(track)
            if track.kind == "video":
                stages["sent"][index_of(packet.pts or 0)] = time.time()
            return packet

        webrtc.PacketTrack.recv = stamped_recv  # type: ignore[method-assign,assignment]

    def _index_of(self, pts: int) -> int:
        return round(pts / 90000 * float(self._fps))

    @property
    def info(self) -> Any:
        return self._camera.info

    async def _frames(self) -> Any:
        async for frame in self._camera.frames():
            self.stages["yielded"][frame.index] = time.time()
            self.stages["captured"][frame.index] = frame.wall_s
            yield frame

    @property
    def source(self) -> Any:
        """The camera as the pipeline sees it, stamping each frame as it leaves the camera."""
        stamps = self

        class _Source:
            info = stamps.info

            def frames(self) -> Any:
                return stamps._frames()

            def __getattr__(self, name: str) -> Any:
                return getattr(stamps._camera, name)

        return _Source()

    def take(self) -> dict[str, dict[int, float]]:
        """The stamps so far (and forget them)."""
        taken = {name: dict(times) for name, times in self.stages.items()}
        for times in self.stages.values():
            times.clear()
        return taken


async def bench(
    seconds: float,
    codec: str | None,
    settings: dict[str, Any],
    latency_only: bool = False,
) -> dict[str, Any]:
    from hub.client import DoorwardClient
    from hub.client.live import receive_live

    fps = settings["fps"]
    owner = KeyBundle.generate("x25519")
    client_stamps = _ClientStamps() if settings["breakdown"] else None
    with tempfile.TemporaryDirectory() as tmp:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--device-child",
            tmp,
            json.dumps(owner.public().to_json()),
            json.dumps(settings),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stdin is not None

        async def ask(what: bytes) -> Any:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(what + b"\n")
            await process.stdin.drain()
            return json.loads(await asyncio.wait_for(process.stdout.readline(), 30))

        quiet = talking = three = None
        heard: list[float] = []
        tone = BurstTone()
        device_stamps: dict[str, dict[str, float]] = {}
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
                        reading = read_strip(_strip_luma(picture))
                        if reading is not None and latencies is not None:
                            latencies.append((now - start_wall) * 1000 - reading.timestamp_ms)
                            if client_stamps is not None:
                                client_stamps.decoded(picture.pts, reading.counter, now)

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
                if client_stamps is not None:
                    await ask(b"stamps")  # forget the frames nobody watched
                    client_stamps.start()
                one = await cpu_rate(1, latencies)
                if client_stamps is not None:
                    client_stamps.stop()
                    device_stamps = await ask(b"stamps")
                if not latency_only:
                    quiet, talking = await talk_rates(api, tone, seconds)
                    heard = await ask(b"onsets")
                    three = await cpu_rate(3, None)
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
    # The first second includes connection set-up and the first keyframe: not steady state.
    steady = sorted(latencies[fps:] or latencies)
    first_cost = max(one - idle, 1e-9)
    result: dict[str, Any] = {
        "width": settings["width"],
        "height": settings["height"],
        "fps": fps,
        "latency_p50_ms": round(float(np.percentile(steady, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(steady, 95)), 1),
        "latency_frames": len(steady),
        "device_cpu_idle": round(idle, 3),
        "device_cpu_one_viewer": round(one, 3),
    }
    if three is not None and quiet is not None and talking is not None:
        # The first burst goes out while the session is still being set up: not steady state.
        talk = sorted(match_onsets(tone.onsets[1:], heard, within_s=0.45))
        result |= {
            "device_cpu_three_viewers": round(three, 3),
            "cpu_per_extra_viewer_ratio": round((three - one) / 2 / first_cost, 2),
            "talk_latency_p50_ms": _percentile_ms(talk, 50),
            "talk_latency_p95_ms": _percentile_ms(talk, 95),
            "talk_bursts_sent": len(tone.onsets) - 1,
            "talk_bursts_heard": len(talk),
            "device_cpu_one_viewer_quiet": round(quiet, 3),
            "device_cpu_one_viewer_talking": round(talking, 3),
            "talk_cpu_share": round(talking - quiet, 4),
        }
    if client_stamps is not None:
        result["breakdown_ms"] = breakdown(device_stamps, client_stamps, skip=fps)
    result |= {
        "seconds_per_phase": seconds,
        "viewer_codec": codec or "any (H.264 chosen)",
        "audio": settings["audio"],
    }
    return result


# The stages of ``--breakdown``, in order: each is the time from the stamp before it.
STAGES = (
    ("captured", "the capture time the camera draws into the frame"),
    ("yielded", "the camera hands the frame over (drawing it, and the loop's lateness)"),
    ("relayed", "the live relay has it (the recording pipeline's hand-off)"),
    ("encoding", "the live encoder starts on it (waiting for the encoder's thread)"),
    ("encoded", "the live encoder is done with it"),
    ("sent", "aiortc's sender takes its packet (the viewer's queue, the event loop)"),
    ("arrived", "the phone has its last RTP packet (packetizing, SRTP, UDP, receiving)"),
    ("released", "the phone's jitter buffer hands it to the decoder"),
    ("decoded", "the phone has decoded it (its decoder thread, then its event loop)"),
)


def breakdown(
    device: dict[str, dict[str, float]], client: _ClientStamps, *, skip: int
) -> dict[str, dict[str, float]]:
    """p50 and p95 of each stage's share of the latency, in ms, over the frames every stamp
    saw (the first ``skip`` of them left out, as for the latency itself)."""
    stamps = {name: {int(i): t for i, t in times.items()} for name, times in device.items()}
    stamps |= client.by_index()
    names = [name for name, _ in STAGES]
    complete = sorted(set.intersection(*(set(stamps.get(n, {})) for n in names)))[skip:]
    shares: dict[str, dict[str, float]] = {}
    for before, after in itertools.pairwise(names):
        spans = [(stamps[after][i] - stamps[before][i]) * 1000 for i in complete]
        if spans:
            shares[after] = {
                "p50": round(float(np.percentile(spans, 50)), 1),
                "p95": round(float(np.percentile(spans, 95)), 1),
            }
    shares["frames"] = {"complete": len(complete)}
    return shares


class _ClientStamps:
    """``--breakdown`` on the phone: when each video frame's last RTP packet (the marker)
    reaches the receiver's jitter buffer, and when the buffer hands the frame on, by its RTP
    timestamp; then, by what the decoded picture's strip says, the frame's index. Wraps
    ``JitterBuffer.add`` while :meth:`start`-ed; what it wraps runs as it would without it."""

    def __init__(self) -> None:
        from aiortc import jitterbuffer

        self._module = jitterbuffer
        self._original = jitterbuffer.JitterBuffer.add
        self.arrived: dict[int, float] = {}  # raw RTP timestamp -> time
        self.released: list[tuple[Any, int, float]] = []  # (frame, raw timestamp, time)
        self.index_by_pts: dict[int, tuple[int, float]] = {}  # mapped pts -> (index, time)

    def start(self) -> None:
        original = self._original
        arrived, released = self.arrived, self.released

        def add(buffer: Any, packet: Any) -> Any:
            if not buffer._is_video:
                return original(buffer, packet)
            now = time.time()
            if packet.marker:
                arrived.setdefault(packet.timestamp, now)
            pli, frame = original(buffer, packet)
            if frame is not None:
                released.append((frame, frame.timestamp, time.time()))
            return pli, frame

        self._module.JitterBuffer.add = add  # type: ignore[method-assign,assignment]

    def stop(self) -> None:
        self._module.JitterBuffer.add = self._original  # type: ignore[method-assign]

    def decoded(self, pts: int | None, index: int, now: float) -> None:
        if pts is not None:
            self.index_by_pts.setdefault(pts, (index, now))

    def by_index(self) -> dict[str, dict[int, float]]:
        """The phone's stamps by frame index: arrived, released, decoded."""
        out: dict[str, dict[int, float]] = {"arrived": {}, "released": {}, "decoded": {}}
        for frame, raw, at in self.released:
            # The receiver maps the RTP timestamp (in place) after the buffer hands it on.
            seen = self.index_by_pts.get(frame.timestamp)
            if seen is None or raw not in self.arrived:
                continue
            index, decoded_at = seen
            out["arrived"][index] = self.arrived[raw]
            out["released"][index] = at
            out["decoded"][index] = decoded_at
        return out


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


def _strip_luma(picture: av.VideoFrame) -> Any:
    """The top rows of the picture's luma, where the strip is: read in place from a yuv420p
    picture (as the phone's decoder gives), so that reading it costs the phone next to nothing
    (a full-picture conversion at 720p30 takes CPU the device shares on this machine)."""
    if picture.format.name not in ("yuv420p", "yuvj420p"):
        return np.asarray(picture.to_ndarray(format="gray"), dtype=np.uint8)
    plane = picture.planes[0]
    rows = min(strip_rows(picture.width), picture.height)
    luma = np.frombuffer(plane, dtype=np.uint8)[: rows * plane.line_size]  # type: ignore[call-overload]
    return luma.reshape(rows, plane.line_size)[:, : picture.width]


def _percentile_ms(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--codec", help="what the viewers accept, e.g. video/VP8 (default: any)")
    parser.add_argument("--audio", action="store_true", help="the camera has a microphone")
    parser.add_argument("--width", type=int, default=1280, help="camera width (default 1280)")
    parser.add_argument("--height", type=int, default=720, help="camera height (default 720)")
    parser.add_argument("--fps", type=int, default=30, help="camera frame rate (default 30)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time each stage of a frame's way from camera to decoded picture",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="measure latency and one viewer's CPU only (no talk, no three viewers)",
    )
    parser.add_argument("--device-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device_child:
        data_dir, owner_json, settings = args.device_child
        asyncio.run(run_device(Path(data_dir), owner_json, json.loads(settings)))
        return
    if args.width < 320 or args.height < 240 or args.width % 2 or args.height % 2:
        parser.error(
            f"--width and --height must be even and at least 320x240 (the frame strip needs "
            f"that), got {args.width}x{args.height}"
        )
    if not 1 <= args.fps <= 60:
        parser.error(f"--fps must be 1 to 60, got {args.fps}")
    settings = {
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "audio": args.audio,
        "breakdown": args.breakdown,
    }
    result = asyncio.run(bench(args.seconds, args.codec, settings, args.latency_only))
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
