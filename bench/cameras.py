"""How many cameras one small box records: N cameras in one ``doorward serve``, in real time.

    python bench/cameras.py [--json] [--window 12] [--max-two 32] [--max-single 16]

Each camera's streams are rendered once, up front, and replayed in real time from files as a
network camera delivers them (the cameras' own encoding never runs on the measured process): a
1920x1080 15 fps H.264 main stream (about 4 Mb/s, a keyframe every 2 s) and a 640x360 15 fps
H.264 substream of the same scene, a 10 s loop in which a bright block crosses a textured,
noisy wall for 3.5 s (one motion event per loop). A two-stream camera is
``camK=main.ts detect=sub.ts`` (the main stream demuxed and remuxed, never decoded; the
substream decoded for motion); a single-stream camera is ``camK=main.ts`` (the main stream
remuxed and decoded for motion, lightly: see ``StreamReader.decode_lightly``).

A trial starts ``doorward serve`` with N cameras (one owner paired, so clips are encrypted and
written), lets it run ``_WARMUP_S``, then watches it for ``--window`` seconds. It passes when:
no camera falls behind real time by more than half a second of frames (``/metrics`` frame counts
against the wall clock; a network camera's frames would be lost past that) nor reports dropped
frames, no segment reaches the disk later than ``_LATE_S`` after its last frame (pre-roll segments,
written when motion starts, excepted), and every camera
recorded a clip for every motion event of the window. N rises (16 first for two streams, 6 for
one) and is then bisected, so each search takes a handful of trials.

- ``max_cameras_two_streams``: the most two-stream cameras that pass (goal >= 16).
- ``max_cameras_h264_single_stream``: the most single-stream H.264 cameras that pass (goal >= 6).
- ``cpu_per_camera_two_streams``: CPU of the serve process (every thread) per camera, as a share
  of one core, with 16 two-stream cameras (goal <= 0.03); ``cpu_per_camera_h264_single_stream``
  the same at the largest single-stream N that passed.
- ``bare_decode_sub_cpu_share`` / ``bare_decode_main_cpu_share``: a bare PyAV decode of the same
  substream / main stream files in this process (as the cameras decode them: the substream on one
  thread, the main stream with frame and slice threads), CPU per second of video; ``two_streams_vs_bare_decode`` and ``single_stream_vs_bare_decode``
  divide the per-camera figures by them. ``light_decode_vs_full_decode``: the main stream decoded
  as a single-stream camera's pictures are (undecoded non-reference pictures, no deblocking) over
  the full decode.
- ``rss_per_extra_camera_MB``: (RSS with 16 cameras - RSS with 1) / 15 (goal <= 15);
  ``rss_16_cameras_MB`` the first (both read from /proc at the end of the window).
- ``startup_s_16_cameras``: from launching ``doorward serve`` with 16 two-stream cameras until it
  has answered a signed ``GET /health`` over HTTPS and a zeroconf browser in this process has
  resolved its record (goal <= 2.0); ``startup_https_s_16_cameras`` and
  ``startup_discoverable_s_16_cameras`` are the two parts.

The machine is shared: a trial that fails under a neighbour's burst lowers a maximum; the figures
are a floor. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

from bench._process import stop_process  # noqa: E402
from crypto.keys import KeyBundle  # noqa: E402
from device import RecorderConfig  # noqa: E402
from device._encoder import H264Encoder  # noqa: E402
from hub.server.state import Device  # noqa: E402

_FPS = 15
_MAIN = (1920, 1080)
_SUB = (640, 360)
_LOOP_S = 10.0
_REPEATS = 6  # the files hold a minute: the loop, muxed six times
_EVENT_S = (3.0, 6.5)  # the block crosses the picture meanwhile, once per loop
_WARMUP_S = 4.0
_LATE_S = 1.5  # a segment on disk later than this after its last frame is late
_PREROLL_COMMIT_S = 0.5  # segments on disk this close to a clip's first are its pre-roll
_BEHIND_FRAMES = _FPS // 2  # half a second of frames
_START_TIMEOUT_S = 60.0
# What the device imports, byte-compiled once before the trials (as an installed package is).
_COMPILE = "import hub.cli.cmd_serve, hub.server.serve, hub.server.runtime, hardware.sim"
_TWO_FIRST, _SINGLE_FIRST = 16, 6


# -- the streams, rendered once -----------------------------------------------------------------


def render(work: Path) -> tuple[Path, Path]:
    """main.ts (1080p) and sub.ts (360p) of the same scene: a 10 s loop, encoded once and muxed
    ``_REPEATS`` times (a file camera reopens its file at the end: rarely, as a network camera
    never does)."""
    w, h = _MAIN
    sw, sh = _SUB
    rng = np.random.default_rng(14)
    texture = rng.integers(40, 210, (h // 8, w // 8), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, axis=0), 8, axis=1)
    noise = rng.integers(0, 16, (5, h, w), dtype=np.uint8)
    main_enc = H264Encoder(w, h, Fraction(_FPS), RecorderConfig(bitrate_kbps=4000))
    sub_enc = H264Encoder(sw, sh, Fraction(_FPS), RecorderConfig(bitrate_kbps=600))
    encoded: tuple[list[Any], list[Any]] = ([], [])
    frames = round(_LOOP_S * _FPS)
    chroma = np.full((h // 2, w // 2), 128, np.uint8)
    small_chroma = np.full((sh // 2, sw // 2), 128, np.uint8)
    for index in range(frames + 1):
        t = index / _FPS
        if index < frames:
            y = texture + noise[index % len(noise)]
            if _EVENT_S[0] <= t < _EVENT_S[1]:
                x = round((t - _EVENT_S[0]) / (_EVENT_S[1] - _EVENT_S[0]) * (w - 300))
                y[h // 3 : h // 3 + 420, x : x + 300] = 235
            small = y.reshape(sh, h // sh, sw, w // sw).mean(axis=(1, 3)).astype(np.uint8)
            encoded[0].extend(main_enc.encode(y, chroma, chroma, t, t))
            encoded[1].extend(sub_enc.encode(small, small_chroma, small_chroma, t, t))
        else:
            encoded[0].extend(main_enc.flush())
            encoded[1].extend(sub_enc.flush())
    paths = (work / "main.ts", work / "sub.ts")
    for path, packets, (pw, ph) in zip(paths, encoded, (_MAIN, _SUB), strict=True):
        with av.open(str(path), "w", format="mpegts") as container:
            stream = container.add_mux_stream("h264", rate=_FPS, width=pw, height=ph)
            for repeat in range(_REPEATS):
                for packet in packets:
                    shift = round(repeat * _LOOP_S / packet.time_base)
                    p = av.Packet(packet.data)
                    p.pts, p.dts = packet.pts + shift, packet.dts + shift
                    p.time_base = packet.time_base
                    p.stream = stream
                    container.mux(p)
    return paths


def bare_decode_share(path: Path, *, light: bool = False, one_thread: bool = False) -> float:
    """CPU seconds per second of video of a bare decode of the first loop of ``path``, as the
    cameras decode it (best of three)."""
    best = math.inf
    frames = round(_LOOP_S * _FPS)
    for _ in range(3):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if one_thread:
                stream.codec_context.thread_count = 1
            else:
                stream.thread_type = "AUTO"
            if light:
                stream.codec_context.options = {"skip_loop_filter": "all"}
            cpu0 = time.process_time()
            count = sum(1 for _ in itertools.islice(container.decode(stream), frames))
            best = min(best, (time.process_time() - cpu0) / (count / _FPS))
    return best


# -- one trial: N cameras in one doorward serve ---------------------------------------------------


@dataclass
class Trial:
    cameras: int
    two_streams: bool
    passed: bool = False
    behind_frames: int = 0
    dropped_frames: int = 0
    late_segments: int = 0
    segments: int = 0
    missed_events: int = 0
    cpu_share: float = 0.0  # of one core, whole process
    rss_mb: float = 0.0
    startup_s: float | None = None
    startup_https_s: float | None = None
    startup_discoverable_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "cameras": self.cameras,
            "two_streams": self.two_streams,
            "passed": self.passed,
            "behind_frames": self.behind_frames,
            "dropped_frames": self.dropped_frames,
            "late_segments": self.late_segments,
            "segments": self.segments,
            "missed_events": self.missed_events,
            "cpu_per_camera": round(self.cpu_share / self.cameras, 4),
            "rss_MB": round(self.rss_mb, 1),
        }


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _metrics(client: Any) -> tuple[dict[str, dict[str, int]], float]:
    asked = time.monotonic()
    cameras = dict((await client.metrics())["cameras"])
    return cameras, (asked + time.monotonic()) / 2


async def trial(
    work: Path, streams: tuple[Path, Path], n: int, two: bool, window_s: float, *, timed: bool
) -> Trial:
    from hub.client import DoorwardClient
    from hub.wire.discovery import browse

    result = Trial(n, two)
    root = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=work))
    data = root / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    try:
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        device_id, fingerprint = device.identity.device_id, device.fingerprint
    finally:
        device.close()
    main, sub = streams
    specs = [f"cam{i}={main} detect={sub}" if two else f"cam{i}={main}" for i in range(n)]
    (root / "serve.toml").write_text(
        f"pre_roll_s = 2.0\npost_roll_s = 2.0\nsegment_s = 2.0\ncameras = {json.dumps(specs)}\n"
    )
    env = _serve_env(work)

    async def browse_timed() -> tuple[list[Any], float]:
        found = await browse(20.0, interfaces=["127.0.0.1"], until_found=[device_id])
        return found, time.monotonic()

    browser = asyncio.ensure_future(browse_timed()) if timed else None
    launched = time.monotonic()
    with (root / "serve.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli.main", "serve", "--config", str(root / "serve.toml"),
            "--data", str(data), "--host", "127.0.0.1", "--port", "0",
            *([] if timed else ["--no-advertise"]),
            stdout=subprocess.PIPE, stderr=log, cwd=_REPO, env=env,
        )  # fmt: skip
    try:
        url = await _serving_url(process, root)
        async with DoorwardClient(
            url, fingerprint=fingerprint, device_id=device_id, key=owner.signing_key, timeout_s=20
        ) as phone:
            await phone.health()
            result.startup_https_s = https_s = time.monotonic() - launched
            if browser is not None:
                found, found_s = await browser
                if any(d.device_id == device_id for d in found):
                    result.startup_discoverable_s = found_s - launched
                    result.startup_s = max(https_s, found_s - launched)
            await asyncio.sleep(_WARMUP_S)
            before, before_s = await _metrics(phone)
            cpu0 = _proc_cpu_s(process.pid)
            wall0, t0 = time.monotonic(), time.time()
            await asyncio.sleep(window_s)
            after, after_s = await _metrics(phone)
            result.cpu_share = (_proc_cpu_s(process.pid) - cpu0) / (time.monotonic() - wall0)
            result.rss_mb = _proc_rss_mb(process.pid)
            t1 = time.time()
        expected = round((after_s - before_s) * _FPS)
        for name in before:
            got = after[name]["frames"] - before[name]["frames"]
            result.behind_frames = max(result.behind_frames, expected - got)
            result.dropped_frames += after[name]["dropped_frames"] - before[name]["dropped_frames"]
    finally:
        await stop_process(process, 60.0)
    _judge_disk(result, data, t0, t1, window_s)
    result.passed = (
        result.behind_frames <= _BEHIND_FRAMES
        and result.dropped_frames == 0
        and result.late_segments == 0
        and result.missed_events == 0
        and result.segments > 0
    )
    return result


def _serve_env(work: Path) -> dict[str, str]:
    skip = ("NOTIFY_SOCKET", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env["PYTHONPATH"] = str(_REPO)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


async def _serving_url(process: asyncio.subprocess.Process, root: Path) -> str:
    assert process.stdout is not None
    line = b""
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not line.startswith(b"doorward: serving "):
            line = await process.stdout.readline()
            if not line:
                tail = (root / "serve.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"doorward serve exited before serving:\n{tail}")
    return line.split()[2].decode()


def _judge_disk(result: Trial, data: Path, t0: float, t1: float, window_s: float) -> None:
    """Late segments (on disk long after their last frame) and events without a clip."""
    db = sqlite3.connect(f"file:{data / 'doorward.db'}?mode=ro", uri=True)
    try:
        segments = db.execute(
            "SELECT c.rel_dir, s.idx, s.start_s, s.duration_s FROM segments s "
            "JOIN clips c ON c.clip_id = s.clip_id"
        ).fetchall()
        clips = db.execute("SELECT camera, start_s, end_s FROM clips").fetchall()
    finally:
        db.close()
    # A clip's pre-roll segments are written when motion starts, after their last frame by
    # design: they go to disk at once with the clip's first commit and are not judged.
    written: dict[str, list[tuple[float, float]]] = {}
    for rel_dir, idx, start_s, duration_s in segments:
        path = data / rel_dir / f"seg-{idx:06d}.ts.age"
        with contextlib.suppress(FileNotFoundError):
            written.setdefault(rel_dir, []).append((path.stat().st_mtime, start_s + duration_s))
    for commits in written.values():
        first = min(mtime for mtime, _ in commits)
        for mtime, end_s in commits:
            if not t0 <= end_s <= t1 or mtime - first < _PREROLL_COMMIT_S:
                continue
            result.segments += 1
            if mtime - end_s > _LATE_S:
                result.late_segments += 1
    # One event per loop: a window of W seconds holds at least floor(W / loop) - 1 whole ones,
    # each of which a clip must overlap.
    events = max(1, math.floor(window_s / _LOOP_S) - 1)
    per_camera: dict[str, int] = {}
    for camera, start_s, end_s in clips:
        if start_s < t1 and (end_s is None or end_s > t0):
            per_camera[camera] = per_camera.get(camera, 0) + 1
    for i in range(result.cameras):
        result.missed_events += max(0, events - per_camera.get(f"cam{i}", 0))


# -- the search ------------------------------------------------------------------------------------


async def search(
    work: Path, streams: tuple[Path, Path], two: bool, first: int, most: int, window_s: float,
    trials: list[Trial], log: IO[str],
) -> int:  # fmt: skip
    """The largest N that passes: N doubles from ``first`` while it passes, then bisects."""
    known = {t.cameras: t.passed for t in trials if t.two_streams == two}
    lo, hi, n = 0, most + 1, min(first, most)
    while hi - lo > 1:
        if n not in known:
            t = await trial(work, streams, n, two, window_s, timed=False)
            trials.append(t)
            known[n] = t.passed
            print(json.dumps(t.summary()), file=log, flush=True)
        if known[n]:
            lo = n
            n = min(most, n * 2) if hi > most else (lo + hi) // 2
        else:
            hi = n
            n = (lo + hi) // 2
        if n <= lo or n >= hi:
            n = (lo + hi) // 2
    return lo


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    log = sys.stderr
    with tempfile.TemporaryDirectory(prefix="doorward-cameras-") as tmp:
        work = Path(tmp)
        streams = render(work)
        subprocess.run(  # noqa: ASYNC221 - once, before any trial
            [sys.executable, "-c", _COMPILE], cwd=_REPO, env=_serve_env(work), check=True
        )
        sub_share = bare_decode_share(streams[1], one_thread=True)
        main_share = bare_decode_share(streams[0])
        light_share = bare_decode_share(streams[0], light=True)
        trials: list[Trial] = []
        # 16 two-stream cameras, timed (HTTPS and mDNS), first: the figures at 16 come from it.
        sixteen = await trial(work, streams, 16, True, args.window, timed=True)
        trials.append(sixteen)
        print(json.dumps(sixteen.summary()), file=log, flush=True)
        one = await trial(work, streams, 1, True, args.window, timed=False)
        trials.append(one)
        print(json.dumps(one.summary()), file=log, flush=True)
        max_two = await search(
            work, streams, True, _TWO_FIRST, args.max_two, args.window, trials, log
        )
        max_single = await search(
            work, streams, False, _SINGLE_FIRST, args.max_single, args.window, trials, log
        )
    single = max(
        (t for t in trials if not t.two_streams and t.passed),
        key=lambda t: t.cameras,
        default=None,
    )
    cpu_two = sixteen.cpu_share / 16
    cpu_single = single.cpu_share / single.cameras if single is not None else float("nan")
    return {
        "max_cameras_two_streams": max_two,
        "max_cameras_h264_single_stream": max_single,
        "cpu_per_camera_two_streams": round(cpu_two, 4),
        "cpu_per_camera_h264_single_stream": round(cpu_single, 4),
        "bare_decode_sub_cpu_share": round(sub_share, 4),
        "bare_decode_main_cpu_share": round(main_share, 4),
        "two_streams_vs_bare_decode": round(cpu_two / sub_share, 2),
        "single_stream_vs_bare_decode": round(cpu_single / main_share, 2),
        "light_decode_vs_full_decode": round(light_share / main_share, 2),
        "rss_per_extra_camera_MB": round((sixteen.rss_mb - one.rss_mb) / 15, 1),
        "rss_16_cameras_MB": round(sixteen.rss_mb, 1),
        "startup_s_16_cameras": _rounded(sixteen.startup_s),
        "startup_https_s_16_cameras": _rounded(sixteen.startup_https_s),
        "startup_discoverable_s_16_cameras": _rounded(sixteen.startup_discoverable_s),
        "sixteen_two_stream_cameras_passed": sixteen.passed,
        "window_s": args.window,
        "trials": [t.summary() for t in trials],
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--window", type=float, default=12.0, help="seconds watched per trial")
    parser.add_argument("--max-two", type=int, default=32, help="most two-stream cameras tried")
    parser.add_argument("--max-single", type=int, default=16, help="most single-stream tried")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(main_async(args))
    result["bench_s"] = round(time.monotonic() - started, 1)
    if not args.json:
        for key, value in result.items():
            if key != "trials":
                print(f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
