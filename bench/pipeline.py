"""CPU cost of the recording pipeline against its anchors, and the memory of one 1080p camera.

    python bench/pipeline.py [--json] [--seconds S]

- ``pipeline_vs_encode``: CPU seconds per second of 720p30 video of the whole pipeline (motion,
  libx264 encode, segmenting, age encryption, store with fsync) over a bare libx264 encode of the
  same frames with the same settings. Frames are rendered up front by the SimulatedCamera and
  replayed from memory on both sides, so rendering counts on neither. Goal <= 1.25.
- ``remux_pipeline_vs_decode``: for an H.264 file (those frames encoded once, up front) replayed by
  FileCamera, the whole pipeline (decode for motion, remux, encryption, store) over a bare PyAV
  decode of the file. Goal <= 1.3. Both sides open the file with ``av.open``, decode with the same
  settings (``thread_type`` = FileCamera's ``DECODE_THREAD_TYPE``, i.e. frame and slice threads,
  FFmpeg's default thread count) and take each picture's Y, U and V planes as numpy views, as
  FileCamera hands them on. ``remux_pipeline_vs_decode_copy`` divides by a decode that copies the
  planes out with ``to_ndarray()`` instead (the anchor before FileCamera stopped copying).
- ``peak_rss_MB_1080p``: ru_maxrss of a fresh process recording a simulated 1080p30 camera
  (continuous recording), camera included. Goal <= 150.

CPU is process time (all threads: x264's, the decoder's and the pipeline's workers). The runs go in
rounds (``--repeats``, default 7; ``--remux-repeats``, default 15, for the file source), each run
once per round, the order reversing every round; a ratio is the median over rounds of subject over
anchor within the round (neighbours in time see the same load from other processes), a CPU figure
the lowest of its rounds. A remux round is short (a quarter of a CPU second per run for 6 s of
video), and on a shared 2-core machine one round's ratio swings by +-0.2 with the other processes'
load, so that median takes twice the rounds to be as steady as the encode one. Opening the clip
store happens once per device, not per second of video, so it stays outside the timed part of a
recording. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

from crypto import age  # noqa: E402
from crypto.keys import DeviceIdentity  # noqa: E402
from device import (  # noqa: E402
    CameraPipeline,
    ClipStore,
    MotionConfig,
    MotionDetector,
    RecorderConfig,
)
from device._encoder import H264Encoder  # noqa: E402
from hardware import (  # noqa: E402
    Frame,
    SoftButton,
    StreamInfo,
)
from hardware._demux import DECODE_THREAD_TYPE, plane_view  # noqa: E402
from hardware.file import FileCamera  # noqa: E402
from hardware.sim import SimulatedCamera, parse_scenario  # noqa: E402

_SCENE = """
[camera]
width = {width}
height = {height}
fps = 30
seconds = {seconds}
seed = 3

[[actor]]
kind = "person"
enter_s = 0
leave_s = {seconds}
path = [[0.1, 0.8], [0.9, 0.8], [0.2, 0.7]]
size = 0.5
"""


def scenario_camera(width: int, height: int, seconds: float) -> SimulatedCamera:
    text = _SCENE.format(width=width, height=height, seconds=seconds)
    return SimulatedCamera(parse_scenario(text, "bench.toml"))


async def render(width: int, height: int, seconds: float) -> tuple[StreamInfo, list[Frame]]:
    camera = scenario_camera(width, height, seconds)
    return camera.info, [frame async for frame in camera.frames()]


class ReplaySource:
    """A CameraSource over frames already in memory."""

    name = "replay"

    def __init__(self, info: StreamInfo, frames: list[Frame]) -> None:
        self.info = info
        self._frames = frames

    async def frames(self) -> AsyncIterator[Frame]:
        for frame in self._frames:
            yield frame

    async def close(self) -> None:
        return None


class Rounds:
    """CPU seconds of several runs measured in rounds: within a round each run goes once, the
    order reversing from one round to the next, so neighbours in time share the machine's load."""

    def __init__(self, *runs: Callable[[], float], repeats: int) -> None:
        self.cpu_s: list[list[float]] = [[] for _ in runs]
        for round_ in range(repeats):
            order = list(enumerate(runs))
            for i, run in order if round_ % 2 == 0 else reversed(order):
                self.cpu_s[i].append(run())

    def best(self, i: int) -> float:
        """The lowest CPU seconds of run ``i``."""
        return min(self.cpu_s[i])

    def ratio(self, subject: int, anchor: int) -> float:
        """The median over rounds of ``subject``'s CPU over ``anchor``'s in the same round."""
        return statistics.median(
            s / a for s, a in zip(self.cpu_s[subject], self.cpu_s[anchor], strict=True)
        )


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as a run that reports the CPU seconds it took."""

    def run() -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    return run


def bare_encode(info: StreamInfo, frames: list[Frame]) -> None:
    encoder = H264Encoder(info.width, info.height, info.fps, RecorderConfig())
    for frame in frames:
        encoder.encode(frame.y, frame.u, frame.v, frame.pts_s, frame.wall_s)
    encoder.flush()


def record(make_source: Callable[[], object], *, detector_size: tuple[int, int]) -> float:
    """Record everything the source gives (a press every second keeps one clip open) into a fresh
    store; the CPU seconds of the recording, the store's opening and closing left out."""
    owner = age.X25519Identity.generate()
    recipients = [owner.recipient()]
    with tempfile.TemporaryDirectory() as tmp:
        store = ClipStore(Path(tmp), DeviceIdentity.generate())

        async def go() -> None:
            source = make_source()
            button = SoftButton()

            def press(frame: Frame, _result: object) -> None:
                if frame.index % 30 == 0:
                    button.press(frame.pts_s)

            pipeline = CameraPipeline(
                "bench",
                source,  # type: ignore[arg-type]
                store,
                lambda: recipients,
                detector=MotionDetector(MotionConfig(), *detector_size),
                button=button,
                on_frame=press,
            )
            await pipeline.run()

        start = time.process_time()
        asyncio.run(go())
        cpu_s = time.process_time() - start
        store.close()
    return cpu_s


def write_ts(info: StreamInfo, frames: list[Frame], path: Path) -> None:
    encoder = H264Encoder(info.width, info.height, info.fps, RecorderConfig())
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_mux_stream(
            "h264", rate=info.fps, width=info.width, height=info.height
        )
        for frame in frames:
            for packet in encoder.encode(frame.y, frame.u, frame.v, frame.pts_s, frame.wall_s):
                out = av.Packet(packet.data)
                out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
                out.stream = stream
                container.mux(out)


def bare_decode(path: Path, *, copy: bool = False) -> None:
    """Decode every picture as FileCamera does and take its planes (views, or copies)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = DECODE_THREAD_TYPE
        for frame in container.decode(stream):
            if copy:
                frame.to_ndarray()
                continue
            width, height, planes = frame.width, frame.height, frame.planes
            plane_view(planes[0], width, height)
            plane_view(planes[1], width // 2, height // 2)
            plane_view(planes[2], width // 2, height // 2)


class MovingBlockCamera:
    """A light 1080p30 camera for the memory figure: a textured scene and a block crossing it.

    Like a real capture device it holds one picture at a time (the scenario renderer keeps whole
    layers of the scene in memory, which no doorbell camera would).
    """

    name = "block"

    def __init__(self, seconds: float, width: int = 1920, height: int = 1080) -> None:
        self.info = StreamInfo(width, height, Fraction(30))
        self._count = round(seconds * 30)
        rng = np.random.default_rng(5)
        self._background = rng.integers(60, 190, (height, width), dtype=np.uint8)
        self._chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)

    async def frames(self) -> AsyncIterator[Frame]:
        height, width = self._background.shape
        for index in range(self._count):
            y = self._background.copy()
            x = (index * 16) % (width - 200)
            y[height // 2 : height // 2 + 300, x : x + 200] = 235
            yield Frame(index, index / 30, index / 30, y, self._chroma, self._chroma)

    async def close(self) -> None:
        return None


def peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(seconds: float, scenario: bool) -> None:
    """Run in a fresh process: record a 1080p30 camera continuously, print peak RSS in MB."""
    if scenario:
        camera = scenario_camera(1920, 1080, seconds)
        record(lambda: camera, detector_size=(1920, 1080))
    else:
        record(lambda: MovingBlockCamera(seconds), detector_size=(1920, 1080))
    print(peak_rss_mb())


def child_rss_mb(seconds: float, *, scenario: bool) -> float:
    command = [sys.executable, __file__, "--rss-child", "--seconds", str(seconds)]
    if scenario:
        command.append("--scenario")
    child = subprocess.run(command, capture_output=True, check=True, text=True)
    return float(child.stdout.strip().splitlines()[-1])


def source_only(path: Path) -> None:
    async def drain() -> None:
        camera = FileCamera(path)
        async for _frame in camera.frames():
            pass
        await camera.close()

    asyncio.run(drain())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of video per run")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the encode measurement")
    parser.add_argument(
        "--remux-repeats", type=int, default=15, help="rounds of the file-source measurement"
    )
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.seconds, args.scenario)
        return

    # Memory first, while this process (which holds the 720p frames later) is still small.
    peak_rss = child_rss_mb(args.seconds, scenario=False)
    peak_rss_scenario = child_rss_mb(min(args.seconds, 3.0), scenario=True)

    info, frames = asyncio.run(render(1280, 720, args.seconds))
    video_s = len(frames) / float(info.fps)
    encoding = Rounds(
        timed(lambda: bare_encode(info, frames)),
        lambda: record(lambda: ReplaySource(info, frames), detector_size=(1280, 720)),
        repeats=args.repeats,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ts = Path(tmp) / "source.ts"
        write_ts(info, frames, ts)
        remuxing = Rounds(
            timed(lambda: bare_decode(ts)),
            lambda: record(lambda: FileCamera(ts), detector_size=(1280, 720)),
            timed(lambda: source_only(ts)),
            timed(lambda: bare_decode(ts, copy=True)),
            repeats=args.remux_repeats,
        )
    encode_cpu, pipeline_cpu = (encoding.best(i) / video_s for i in range(2))
    decode_cpu, remux_cpu, source_cpu, copy_decode_cpu = (
        remuxing.best(i) / video_s for i in range(4)
    )
    result = {
        "encode_cpu_s_per_s": round(encode_cpu, 4),
        "pipeline_cpu_s_per_s": round(pipeline_cpu, 4),
        "pipeline_vs_encode": round(encoding.ratio(1, 0), 3),
        "decode_cpu_s_per_s": round(decode_cpu, 4),
        "remux_pipeline_cpu_s_per_s": round(remux_cpu, 4),
        "remux_pipeline_vs_decode": round(remuxing.ratio(1, 0), 3),
        "remux_pipeline_vs_decode_copy": round(remuxing.ratio(1, 3), 3),
        "remux_source_only_vs_decode": round(remuxing.ratio(2, 0), 3),
        "peak_rss_MB_1080p": round(peak_rss, 1),
        "peak_rss_MB_1080p_scenario_camera": round(peak_rss_scenario, 1),
    }
    if not args.json:
        print("720p30, CPU seconds per second of video (lowest of the rounds):")
        print(f"  bare libx264 encode      {encode_cpu:.4f}")
        print(f"  whole pipeline           {pipeline_cpu:.4f}")
        print(
            f"  bare decode (H.264 file) {decode_cpu:.4f}  (copying the planes: {copy_decode_cpu:.4f})"
        )
        print(f"  FileCamera alone         {source_cpu:.4f}  (decode + frames, no pipeline)")
        print(f"  remux pipeline           {remux_cpu:.4f}")
        print("ratios (median over rounds):")
        print(f"  pipeline_vs_encode       {result['pipeline_vs_encode']}  (goal <= 1.25)")
        print(f"  remux_pipeline_vs_decode {result['remux_pipeline_vs_decode']}  (goal <= 1.3)")
        print(f"peak RSS, one 1080p camera recording: {peak_rss:.1f} MB (goal <= 150)")
        print(f"  ... with the scenario renderer as the camera: {peak_rss_scenario:.1f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
