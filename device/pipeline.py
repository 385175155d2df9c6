"""One camera's recording pipeline: frames → privacy zones → motion → encoder or remux → pre-roll →
recorder → segmenter → age encryption → clip store.

The asyncio shell only moves frames and events. All per-frame work (masking, detection, encoding,
muxing, encryption, fsync) runs in a worker thread of this camera, so a stalled disk or a slow
encoder holds up this camera alone: other cameras' pipelines and the event loop carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from crypto import age
from device._batches import batches
from device._config import RecorderConfig
from device._encoder import H264Encoder
from device._motion import MotionDetector, MotionResult
from device._preroll import PrerollBuffer, TimedPacket
from device._privacy import PrivacyMask
from device._recorder import Recorder, RecorderAction, RecorderState
from device._segmenter import ClipSink, ClipWriter, VideoFormat
from device.errors import ClipRefused
from device.events import (
    DetectStreamLost,
    DetectStreamRestored,
    DeviceEvent,
    DoorbellPressed,
    MotionDetected,
    RecordingError,
)
from hardware import (
    CameraSource,
    Clock,
    Frame,
    Plane,
    SizeChanges,
    SystemClock,
    TwoStreamCamera,
    Worker,
    detect_lost,
    fit_plane,
)
from hardware.annexb import has_sps, parameter_sets
from hardware.button import DoorbellButton

__all__ = ["CameraPipeline", "PipelineProgress", "PipelineStats"]

logger = logging.getLogger(__name__)

_NO_MOTION = MotionResult(score=0.0, motion=False)
# Frames of a remuxed source sent to the worker in one trip, at most: only frames already
# waiting go together, so a live camera still sends one at a time. A press counts at the first
# frame of the next trip, which starts at most this many frames' processing after the press
# (a few milliseconds even at 1080p: remuxing does not encode). The pipeline holds at most
# this many decoded pictures (about 12 MB at 1080p), waiting or in the worker.
_REMUX_BATCH = 4
# Frames of a raw source read ahead of the worker when live view watches (``on_capture``), at
# most: a worker that falls behind by up to this many frames (a spike of the recording encode
# on a busy box) no longer makes the camera, and so live view, late. The price is the same as
# above: a press counts at the first frame of the next trip, at most this many frames before
# the one it came with, and only while the worker is behind. At most this many decoded
# pictures wait (about 12 MB at 1080p).
_CAPTURE_AHEAD = 4


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Counters of one pipeline so far."""

    frames: int = 0
    dropped_frames: int = 0  # gaps in the source's frame indices
    motion_frames: int = 0
    analysed_frames: int = 0  # frames the motion detector looked at (see RecorderConfig.motion_fps)
    resized_frames: int = 0  # pictures of another size than the stream began with, scaled to it
    encoded_frames: int = 0  # frames through libx264 (0 for a remuxed H.264 camera)
    remuxed_packets: int = 0  # source packets passed through untouched
    clips: int = 0
    segments: int = 0
    bytes_written: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class PipelineProgress:
    """When the pipeline last moved, on its clock's ``monotonic()``; None: not yet (or not now).

    A watchdog reads it from the event loop: a frame trip to the worker that has not returned
    since ``busy_since_s`` is a wedged encoder or disk; no ``last_frame_s`` for long is a source
    that delivers nothing; ``recording_since_s`` without a recent ``last_segment_s`` is a clip
    that does not reach the disk.
    """

    started_s: float | None = None  # run() began
    last_frame_s: float | None = None  # the worker returned a frame (detected, encoded, written)
    busy_since_s: float | None = None  # the worker has been on the current frames since
    recording_since_s: float | None = None  # the recorder left idle (a clip is due on disk)
    last_segment_s: float | None = None  # a segment was committed
    frames: int = 0
    segments: int = 0
    finished: bool = False  # run() has returned or raised


class CameraPipeline:
    """Records one camera into ``store`` until the source ends or :meth:`run` is cancelled.

    ``recipients`` is called at every segment: segments are encrypted to the owners paired at that
    moment. Raw sources are encoded once with libx264; H.264 sources (``info.codec == "h264"``) are
    remuxed untouched, unless the config has privacy zones, which forces an encode of the masked
    picture. Motion is detected on the masked picture, so nothing inside a privacy zone triggers a
    clip. A :class:`~hardware.TwoStreamCamera` records its main stream and the detector (sized to
    its ``detect_info``) watches its substream; when the substream is lost the pipeline reports
    :class:`DetectStreamLost` (and :class:`DetectStreamRestored` when it is back). A source whose
    pictures change size mid-way is scaled back to the size it began with (logged once per size):
    the encoder, the privacy mask and the detector keep theirs, and no segment is lost.
    ``on_event``, ``on_capture`` and ``on_frame`` run on the event loop: ``on_capture`` gets
    each frame as it arrives from the source, before the worker processes it (live view, whose
    picture must not wait for motion and the recording encode), ``on_frame`` once processed,
    with its motion result.
    """

    def __init__(
        self,
        camera_id: str,
        source: CameraSource,
        store: ClipSink,
        recipients: Callable[[], Sequence[age.Recipient]],
        *,
        detector: MotionDetector | None = None,
        config: RecorderConfig | None = None,
        on_event: Callable[[DeviceEvent], None] | None = None,
        on_frame: Callable[[Frame, MotionResult], None] | None = None,
        on_capture: Callable[[Frame], None] | None = None,
        button: DoorbellButton | None = None,
        clock: Clock | None = None,
    ) -> None:
        info = source.info
        self._clock = clock or SystemClock()
        self._progress = PipelineProgress()
        config = config or RecorderConfig()
        self.camera_id = camera_id
        self._source = source
        self._detector = detector
        self._config = config
        self._on_event = on_event
        self._on_frame = on_frame
        self._on_capture = on_capture
        self._button = button
        self._video = VideoFormat(info.width, info.height, info.fps)
        self._two_streams = isinstance(source, TwoStreamCamera)
        if self._two_streams and config.privacy_zones:
            raise ValueError(
                f"camera {camera_id} has privacy zones and a detect stream: its main stream is "
                "recorded as the camera encoded it, so nothing can be blacked out of it; drop "
                "detect= (the main stream is then decoded, masked and encoded) or the zones"
            )
        self._remux = info.codec == "h264" and not config.privacy_zones
        self._parameter_sets = parameter_sets(info.extradata) if self._remux else b""
        if self._remux and not self._two_streams and hasattr(source, "decode_lightly"):
            # Its pictures only feed motion (its packets are recorded): decode no more than that.
            source.decode_lightly()
        self._mask = (
            PrivacyMask(config.privacy_zones, info.width, info.height)
            if config.privacy_zones
            else None
        )
        self._encoder: H264Encoder | None = None
        self._preroll = PrerollBuffer(config.pre_roll_s, config.max_preroll_bytes)
        self._recorder = Recorder(config, name=camera_id)
        self._writer_args = (store, camera_id, self._video, recipients)
        self._clip: ClipWriter | None = None
        self._pending_presses = 0
        self._was_motion = False
        self._last_index: int | None = None
        self._last_dts: int | None = None
        self._awaiting_keyframe = False
        self._resume_at_keyframe = False  # a clip was refused while the event goes on
        self._last_motion_s: float | None = None
        self._last_motion = _NO_MOTION
        self._last_refusal: str | None = None  # reported once per event, not at every retry
        self._ts_shift = 0
        self._detect_lost: str | None = None
        self._sizes = SizeChanges()
        self._counts = dict.fromkeys(PipelineStats.__slots__, 0)

    @property
    def stats(self) -> PipelineStats:
        """Counters so far, including the segments and bytes of the clip still open."""
        counts = dict(self._counts)
        clip = self._clip
        if clip is not None:
            counts["segments"] += clip.segments
            counts["bytes_written"] += clip.bytes_written
        return PipelineStats(**counts)

    @property
    def progress(self) -> PipelineProgress:
        """When the pipeline last took a frame, wrote a segment, and whether it is busy now."""
        return self._progress

    async def run(self) -> PipelineStats:
        """Record until the source ends; on cancellation the open clip is closed, then re-raised."""
        worker = Worker(self.camera_id)
        self._progress = replace(self._progress, started_s=self._clock.monotonic())
        button_task = asyncio.create_task(self._watch_button()) if self._button else None
        frames = self._source.frames()
        logger.info(
            "pipeline.start camera=%s mode=%s size=%dx%d",
            self.camera_id,
            "remux" if self._remux else "encode",
            self._video.width,
            self._video.height,
        )
        # A remuxed source (a file, an RTSP camera) may deliver frames in bursts: send what is
        # waiting to the worker in one trip. See _REMUX_BATCH for what that does to a press.
        # With ``on_capture`` (live view) frames are read ahead of the worker as well, so that
        # each reaches live view when the camera delivers it even while the worker is late
        # (a slow recording encode on a busy box): see _CAPTURE_AHEAD.
        ahead = _REMUX_BATCH if self._remux else _CAPTURE_AHEAD if self._on_capture else 0
        burst = batches(frames, ahead, on_item=self._on_capture) if ahead else None
        try:
            if burst is None:
                async for frame in frames:
                    presses, self._pending_presses = self._pending_presses, 0
                    self._busy()
                    outcome = await worker.run(self._process, frame, presses)
                    self._moved(1)
                    self._deliver(frame, outcome)
            else:
                async for batch in burst:
                    presses, self._pending_presses = self._pending_presses, 0
                    self._busy()
                    done = await worker.run(self._process_batch, batch, presses)
                    self._moved(len(batch))
                    for frame, outcome in zip(batch, done, strict=True):
                        self._deliver(frame, outcome)
        finally:
            # The worker runs one job at a time: this runs after any frame still in progress.
            closing = worker.run(self._close_clip)
            try:
                self._emit(await asyncio.shield(closing))
            finally:
                if button_task is not None:
                    button_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await button_task
                if burst is not None:
                    await burst.aclose()  # stops its read-ahead task
                with contextlib.suppress(RuntimeError):
                    await frames.aclose()  # type: ignore[attr-defined]
                worker.shutdown()
                self._progress = replace(self._progress, busy_since_s=None, finished=True)
                logger.info("pipeline.stop camera=%s stats=%s", self.camera_id, self.stats)
        return self.stats

    # -- event loop side ---------------------------------------------------------------------

    def _busy(self) -> None:
        self._progress = replace(self._progress, busy_since_s=self._clock.monotonic())

    def _moved(self, frames: int) -> None:
        """A trip to the worker came back: stamp the frames, a new segment, the recorder's state."""
        now = self._clock.monotonic()
        was = self._progress
        segments = self.stats.segments
        recording = self._recorder.state is not RecorderState.IDLE
        self._progress = replace(
            was,
            last_frame_s=now,
            busy_since_s=None,
            frames=was.frames + frames,
            segments=segments,
            last_segment_s=now if segments > was.segments else was.last_segment_s,
            recording_since_s=(was.recording_since_s or now) if recording else None,
        )

    async def _watch_button(self) -> None:
        assert self._button is not None
        async for event in self._button.events():
            if event.kind == "press":
                self._pending_presses += 1

    def _deliver(self, frame: Frame, outcome: tuple[MotionResult, list[DeviceEvent]]) -> None:
        result, events = outcome
        if self._two_streams:
            lost = detect_lost(self._source)
            if lost != self._detect_lost:
                if lost is not None and self._detect_lost is None:
                    logger.warning("pipeline.detect_lost camera=%s reason=%s", self.camera_id, lost)
                    events = [*events, DetectStreamLost(self.camera_id, lost)]
                elif lost is None:
                    logger.info("pipeline.detect_restored camera=%s", self.camera_id)
                    events = [*events, DetectStreamRestored(self.camera_id)]
                self._detect_lost = lost
        self._emit(events)
        if self._on_frame is not None:
            self._on_frame(frame, result)

    def _emit(self, events: list[DeviceEvent]) -> None:
        if self._on_event is None:
            return
        for event in events:
            self._on_event(event)

    # -- worker thread side ------------------------------------------------------------------

    def _process_batch(
        self, frames: list[Frame], presses: int
    ) -> list[tuple[MotionResult, list[DeviceEvent]]]:
        """Frames in order; the presses seen before the trip count at the first of them."""
        return [self._process(frame, presses if i == 0 else 0) for i, frame in enumerate(frames)]

    def _process(self, frame: Frame, presses: int) -> tuple[MotionResult, list[DeviceEvent]]:
        counts = self._counts
        counts["frames"] += 1
        if self._last_index is not None and frame.index > self._last_index + 1:
            counts["dropped_frames"] += frame.index - self._last_index - 1
        self._last_index = frame.index
        y, u, v = frame.y, frame.u, frame.v
        if not self._two_streams and (frame.width, frame.height) != (
            self._video.width,
            self._video.height,
        ):
            y, u, v = self._fit(frame, self._video.width, self._video.height)
        if self._mask is not None:
            y, u, v = self._mask.apply(y, u, v)
        result = self._motion(y, frame.pts_s) if frame.new_picture else self._last_motion
        events: list[DeviceEvent] = []
        if result.motion:
            counts["motion_frames"] += 1
            if not self._was_motion:
                events.append(
                    MotionDetected(self.camera_id, frame.pts_s, result.score, result.regions)
                )
        self._was_motion = result.motion
        if presses:
            events.append(DoorbellPressed(self.camera_id, frame.pts_s))

        packets = self._packets(frame, y, u, v)
        for packet in packets:
            self._preroll.push(packet)
        action = self._recorder.step(
            motion=result.motion,
            press=presses > 0,
            pts_s=frame.pts_s,
            keyframe=any(p.keyframe for p in packets),
        )
        try:
            events += self._apply(action, packets)
        except ClipRefused as exc:
            events += self._refuse(exc)
        return result, events

    def _motion(self, y: Plane, pts_s: float) -> MotionResult:
        """The detector's answer for this frame, looking at no more than ``motion_fps`` frames a
        second, ``event_motion_fps`` while motion is on (the frames in between keep the last
        answer)."""
        if self._detector is None:
            return _NO_MOTION
        detector = self._detector
        if y.shape != (detector.height, detector.width):  # a detect stream that changed size
            y = fit_plane(y, detector.width, detector.height)
        config = self._config
        fps = config.motion_fps
        if self._last_motion.motion:
            fps = min(fps, config.event_motion_fps)
        # A quarter of motion_fps's period of slack lets a 30 fps camera's frame times land on a
        # 15 fps grid (5 during an event); a clock that went backwards (a reconnected camera)
        # is looked at again at once.
        wait_s = 1.0 / fps - 0.25 / config.motion_fps
        last_s = self._last_motion_s
        if last_s is not None and last_s <= pts_s < last_s + wait_s:
            return self._last_motion
        self._counts["analysed_frames"] += 1
        self._last_motion = self._detector.process(y, pts_s)
        self._last_motion_s = pts_s
        return self._last_motion

    def _fit(self, frame: Frame, width: int, height: int) -> tuple[Plane, Plane, Plane]:
        """A picture of another size than the stream began with, scaled to that size."""
        if self._sizes.is_new(frame):  # a camera that keeps changing is logged a while
            logger.warning(
                "pipeline.size_changed camera=%s size=%dx%d scaled_to=%dx%d",
                self.camera_id,
                frame.width,
                frame.height,
                width,
                height,
            )
        self._counts["resized_frames"] += 1
        return self._sizes.fit(frame, width, height)

    def _packets(self, frame: Frame, y: Plane, u: Plane, v: Plane) -> list[TimedPacket]:
        if self._remux:
            source = frame.packet
            if source is None:
                return []
            data = source.data
            if source.keyframe and self._parameter_sets and not has_sps(data):
                data = self._parameter_sets + data
            self._counts["remuxed_packets"] += 1
            pts, dts = self._monotonic(source.pts, source.dts, source.time_base)
            return [
                TimedPacket(
                    data, pts, dts, source.time_base, source.keyframe, frame.pts_s, frame.wall_s
                )
            ]
        if self._encoder is None:
            self._encoder = H264Encoder(
                self._video.width, self._video.height, self._video.fps, self._config
            )
        self._counts["encoded_frames"] += 1
        return self._encoder.encode(y, u, v, frame.pts_s, frame.wall_s)

    def _monotonic(self, pts: int, dts: int, time_base: Fraction) -> tuple[int, int]:
        """Shift source timestamps that went backwards (a reconnected camera restarts its clock):
        a muxer refuses decreasing dts. The shift lasts until the source's clock moves on."""
        if self._last_dts is not None and dts + self._ts_shift <= self._last_dts:
            frame_ticks = max(1, round(1 / (self._video.fps * time_base)))
            self._ts_shift = self._last_dts + frame_ticks - dts
            logger.info(
                "pipeline.timestamps_rebased camera=%s shift=%d", self.camera_id, self._ts_shift
            )
        self._last_dts = dts + self._ts_shift
        return pts + self._ts_shift, dts + self._ts_shift

    def _apply(self, action: RecorderAction, packets: list[TimedPacket]) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        if action is RecorderAction.START:
            preroll = self._preroll.packets()
            if preroll:
                events += self._start(preroll)
            else:  # no keyframe seen yet (an H.264 source joined mid-GOP): open at the first one
                self._awaiting_keyframe = True
        elif action is RecorderAction.SPLIT:
            events += self._close_clip()
            events += self._start(packets)
        elif action in (RecorderAction.RECORD, RecorderAction.STOP):
            if action is RecorderAction.STOP:
                self._resume_at_keyframe = False
                self._last_refusal = None
            elif (
                self._clip is None and self._resume_at_keyframe and any(p.keyframe for p in packets)
            ):
                # The event that a refused clip was for goes on (say the first owner has just
                # paired, or eviction freed space): try again from this keyframe.
                self._resume_at_keyframe = False
                return events + self._start(packets)
            if self._clip is None and self._awaiting_keyframe and self._preroll.packets():
                self._awaiting_keyframe = False
                events += self._start(self._preroll.packets())  # ends with this frame's packets
            elif self._clip is not None:
                for packet in packets:
                    events += self._clip.add(packet)
            if action is RecorderAction.STOP:
                self._awaiting_keyframe = False
                events += self._close_clip()
        return events

    def _start(self, packets: list[TimedPacket]) -> list[DeviceEvent]:
        store, camera, video, recipients = self._writer_args
        self._clip = ClipWriter(store, camera, video, recipients, segment_s=self._config.segment_s)
        self._counts["clips"] += 1
        return self._clip.start(packets)

    def _close_clip(self) -> list[DeviceEvent]:
        if self._clip is None:
            return []
        try:
            events = self._clip.finish()
        except ClipRefused as exc:
            return self._refuse(exc)
        self._drop_clip()
        return events

    def _refuse(self, exc: ClipRefused) -> list[DeviceEvent]:
        """Give up the open clip (keeping what is on disk) and report; the pipeline carries on."""
        retrying = self._resume_at_keyframe is False and self._last_refusal == str(exc)
        self._resume_at_keyframe = self._recorder.state is not RecorderState.IDLE
        events: list[DeviceEvent] = []
        if retrying:  # the same refusal again at a later keyframe of the same event: say it once
            logger.debug("pipeline.clip_refused_again camera=%s", self.camera_id)
        else:
            logger.warning("pipeline.clip_refused camera=%s error=%s", self.camera_id, exc)
            self._counts["errors"] += 1
            events.append(RecordingError(self.camera_id, str(exc)))
        self._last_refusal = str(exc) if self._resume_at_keyframe else None
        if self._clip is not None:
            try:
                events += self._clip.close_clip()
            except ClipRefused as again:
                events.append(RecordingError(self.camera_id, str(again)))
            self._drop_clip()
        return events

    def _drop_clip(self) -> None:
        clip, self._clip = self._clip, None
        assert clip is not None
        self._counts["segments"] += clip.segments
        self._counts["bytes_written"] += clip.bytes_written
