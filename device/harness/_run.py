"""The hardware testers' harness: a scenario through the real pipeline, then checked from the outside.

``run_scenario(path)`` plays a scenario file on a SimulatedCamera in virtual time through the real
CameraPipeline (motion detector, recorder, libx264 or remux, segmenter, age encryption, ClipStore)
into a throwaway data directory, encrypting to a throwaway owner. Then it reads back only what a
phone would get: every segment is decrypted with the owner's identity, decoded with PyAV, and each
picture's frame-counter strip is read, so recall, pre-roll, false clips and frame gaps are measured
on the recorded video itself, not on the pipeline's own account of it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from crypto import age
from crypto.keys import DeviceIdentity
from device._config import RecorderConfig
from device._motion import MotionDetector, MotionResult
from device.detector import detector_for
from device.events import (
    ClipFinished,
    ClipStarted,
    DetectStreamLost,
    DeviceEvent,
    RecordingError,
)
from device.harness._plot import plot_run, require_matplotlib
from device.harness._report import (
    ClipCheck,
    FrameSample,
    HarnessReport,
    clip_gaps,
    judge,
    truth_events,
)
from device.harness.faults import FaultyStore, StorageFaults
from device.pipeline import CameraPipeline
from device.store import ClipStore
from hardware import CameraSource, Frame, StreamInfo, TwoStreamCamera
from hardware.errors import CameraDisconnected
from hardware.sim import (
    Scenario,
    SimulatedCamera,
    SimulatedRecordStream,
    load_scenario,
    read_strip,
    strip_rows,
    two_stream_camera,
)

__all__ = ["run_scenario", "run_scenario_async"]

logger = logging.getLogger(__name__)

_CAMERA = "harness"


def run_scenario(path: str | Path, *, report_dir: Path | None = None) -> HarnessReport:
    """Run one scenario file and check what was recorded (raises ScenarioError for a bad file)."""
    return asyncio.run(run_scenario_async(path, report_dir=report_dir))


async def run_scenario_async(path: str | Path, *, report_dir: Path | None = None) -> HarnessReport:
    """As :func:`run_scenario`, on the running event loop."""
    scenario = load_scenario(path)
    if report_dir is not None:
        require_matplotlib()  # before the run, not after it
    with tempfile.TemporaryDirectory(prefix="doorward-harness-") as tmp:
        return await _Run(scenario, Path(tmp)).execute(report_dir)


class _Reconnecting:
    """A camera source that reconnects when the camera drops out, as a deployed camera service does.

    ``SimulatedCamera.frames()`` raises CameraDisconnected at a ``disconnect`` fault and resumes at
    the first frame after the outage when iterated again.
    """

    def __init__(self, camera: SimulatedCamera) -> None:
        self.name = camera.name
        self._camera = camera
        self.disconnects = 0

    @property
    def info(self) -> StreamInfo:
        return self._camera.info

    async def frames(self) -> AsyncIterator[Frame]:
        while True:
            try:
                async for frame in self._camera.frames():
                    yield frame
                return
            except CameraDisconnected as exc:
                self.disconnects += 1
                logger.info("harness.reconnect camera=%s reason=%s", self.name, exc)

    async def close(self) -> None:
        await self._camera.close()


class _Run:
    """One scenario run: the pipeline, the per-frame record, and the checks afterwards."""

    def __init__(self, scenario: Scenario, data_dir: Path) -> None:
        self.scenario = scenario
        self.data_dir = data_dir
        self.owner = age.X25519Identity.generate()
        self.streams: TwoStreamCamera | None = None
        if scenario.camera.two_streams:
            # Both streams from the same scene; the main stream is the judged one (its strip).
            self.streams = two_stream_camera(scenario, realtime=False, reconnect=True)
            assert isinstance(self.streams.record, SimulatedRecordStream)
            self.camera = self.streams.record.camera
        else:
            self.camera = SimulatedCamera(scenario, realtime=False)
        self.detector: MotionDetector = detector_for(self.streams or self.camera)
        self.detect_losses = 0
        self.faults = StorageFaults()
        self.samples: list[FrameSample] = []
        self.errors: list[str] = []
        self._recording = False

    async def execute(self, report_dir: Path | None) -> HarnessReport:
        scenario = self.scenario
        camera = self.camera
        source: CameraSource = self.streams or _Reconnecting(camera)
        store = ClipStore(self.data_dir / "data", DeviceIdentity.generate())
        recipient = self.owner.recipient()
        pipeline = CameraPipeline(
            _CAMERA,
            source,
            FaultyStore(store, self.faults),
            lambda: [recipient],
            detector=self.detector,
            config=RecorderConfig(privacy_zones=scenario.privacy_zones),
            on_event=self._on_event,
            on_frame=self._on_frame,
            button=camera.button,
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            stats = await pipeline.run()
        finally:
            await source.close()
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        try:
            clips = self._check_clips(store)
        finally:
            store.close()
        truths = truth_events(scenario, self.samples)
        events, clips, failures = judge(scenario, truths, clips, self.samples)
        delivered = {s.index for s in self.samples}
        report = HarnessReport(
            scenario=Path(scenario.name).stem,
            description=scenario.description,
            frames=len(self.samples),
            dropped_frames=camera.frame_count - len(delivered),
            events=tuple(events),
            clips=tuple(clips),
            frame_gaps=sum(c.gaps for c in clips),
            unreadable_frames=sum(c.unreadable for c in clips),
            cpu_s=cpu_s,
            wall_s=wall_s,
            peak_rss_mb=_peak_rss_mb(),
            failures=tuple(failures),
            errors=tuple(self.errors),
            encoded_frames=stats.encoded_frames,
            remuxed_packets=stats.remuxed_packets,
            analysed_frames=stats.analysed_frames,
            detect_losses=self.detect_losses,
            fallback_pictures=self.streams.fallback_pictures if self.streams else 0,
            resized_pictures=self.streams.resized_pictures if self.streams else 0,
            samples=tuple(self.samples),
        )
        if report_dir is not None:
            report = self._write(report, report_dir)
        logger.info(
            "harness.done scenario=%s passed=%s failures=%d",
            report.scenario,
            report.passed,
            len(report.failures),
        )
        return report

    # -- during the run (event loop) -----------------------------------------------------------

    def _on_event(self, event: DeviceEvent) -> None:
        if isinstance(event, ClipStarted):
            self._recording = True
        elif isinstance(event, ClipFinished):
            self._recording = False
        elif isinstance(event, RecordingError):
            self.errors.append(event.message)
        elif isinstance(event, DetectStreamLost):
            self.detect_losses += 1

    def _on_frame(self, frame: Frame, result: MotionResult) -> None:
        self.samples.append(
            FrameSample(
                frame.index, frame.pts_s, result.score, result.motion, self._recording, frame.truth
            )
        )
        # Storage faults take effect from the next frame's writes on (for an H.264 camera, whose
        # frames go to the worker up to four at a time, from the next such batch's).
        t = frame.pts_s
        self.faults.set_disk_full(any(f.active(t) for f in self.scenario.faults_of("disk_full")))
        delays = [f.delay_s for f in self.scenario.faults_of("slow_disk") if f.active(t)]
        self.faults.set_delay_s(max(delays, default=0.0))

    # -- afterwards: read back what a phone would get ----------------------------------------

    def _check_clips(self, store: ClipStore) -> list[ClipCheck]:
        delivered = {s.index for s in self.samples}
        checks = []
        for clip in sorted(store.list_clips(camera=_CAMERA), key=lambda c: c.start_s):
            segments = store.list_segments(clip.clip_id)
            readings: list[tuple[int, int] | None] = []
            for segment in segments:
                ts = age.decrypt_bytes([self.owner], segment.path.read_bytes())
                readings.extend(_strip_readings(ts))
            counters = [None if r is None else r[0] for r in readings]
            times = [r[1] / 1000 for r in readings if r is not None]
            gaps, unreadable = clip_gaps(counters, delivered)
            checks.append(
                ClipCheck(
                    clip.clip_id,
                    min(times, default=0.0),
                    max(times, default=0.0),
                    len(readings),
                    len(segments),
                    sum(s.size for s in segments),
                    gaps,
                    unreadable,
                )
            )
        return checks

    def _write(self, report: HarnessReport, report_dir: Path) -> HarnessReport:
        report_dir.mkdir(parents=True, exist_ok=True)
        plot = plot_run(
            report_dir / f"{report.scenario}.png",
            report.scenario,
            report.samples,
            report.events,
            report.clips,
            self.detector.config.min_area,
        )
        report = replace(report, plot=plot)
        (report_dir / f"{report.scenario}.txt").write_text(report.text() + "\n", encoding="utf-8")
        return report


def _strip_readings(ts: bytes) -> list[tuple[int, int] | None]:
    """(frame counter, capture ms) from every decoded picture of an MPEG-TS segment."""
    readings: list[tuple[int, int] | None] = []
    with av.open(io.BytesIO(ts), mode="r", format="mpegts") as container:
        for frame in container.decode(video=0):
            plane = frame.planes[0]
            rows = min(frame.height, strip_rows(frame.width))
            luma = np.frombuffer(bytes(plane), dtype=np.uint8).reshape(-1, plane.line_size)
            reading = read_strip(np.ascontiguousarray(luma[:rows, : frame.width]))
            readings.append(None if reading is None else (reading.counter, reading.timestamp_ms))
    return readings


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
