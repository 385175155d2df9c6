"""SimulatedCamera: a scenario played as a camera, in virtual time or in real time.

Faults act at the source: ``drop_frames`` skips indices, ``stall`` holds delivery back and then
releases the late frames in a burst, ``disconnect`` makes ``frames()`` raise CameraDisconnected
(the next ``frames()`` call reconnects at the first frame after the outage; with ``reconnect``
the camera instead reconnects by itself, as a live camera does), ``hang`` stops delivery without
an error (a wedged capture driver or thread: the frames meanwhile are lost, and without a
``duration_s`` it never resumes), ``clock_jump`` moves ``wall_s``, and ``corrupt_packets`` flips
bytes in H.264 packets. ``disk_full`` and ``slow_disk``
are storage faults: they stay in ``scenario.faults`` for the device side to apply.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from hardware._clock import Clock, SystemClock
from hardware._frames import EncodedPacket, Frame, StreamInfo
from hardware._speaker import SimulatedSpeaker
from hardware._worker import Worker
from hardware.button import SoftButton
from hardware.errors import CameraDisconnected
from hardware.sim._microphone import SimulatedMicrophone
from hardware.sim._scenario_schema import Polygon
from hardware.sim._scene import SceneRenderer
from hardware.sim._x264 import X264Encoder
from hardware.sim.scenario import Fault, Scenario
from hardware.sim.strip import strip_rows

__all__ = ["SimulatedCamera", "TruthSpan"]

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL_S = 2  # the simulated hardware encoder's keyframe spacing


@dataclass(frozen=True, slots=True)
class TruthSpan:
    """An actor visible from frame ``first_index`` to ``last_index``, both included."""

    actor_id: str
    first_index: int
    last_index: int


class SimulatedCamera:
    """A deterministic synthetic camera driven by a scenario (implements CameraSource).

    In virtual time (the default unless the scenario sets ``realtime``) frames come as fast as the
    consumer takes them and ``wall_s`` counts from the scenario's ``start``; in real time each
    frame waits for its due time on ``clock`` and ``wall_s`` counts from ``clock.now()`` at the
    first frame. Either way ``pts_s = index / fps`` and ``wall_s`` is the capture time.
    Scenario presses go to ``self.button`` just before the first frame at or after their time.
    With ``audio`` in the scenario, ``self.microphone`` hears a tone on the same clock (chunks
    stamped like ``pts_s``); otherwise it is None. With ``reconnect``, a ``disconnect`` fault does
    not raise: :attr:`reconnecting` is true until the camera is back (as ``LiveCamera`` reports
    its backoff), which is how ``doorward serve`` plays a scenario. ``self.speaker`` is a
    :class:`~hardware.SimulatedSpeaker` that keeps what was played on the doorbell.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        realtime: bool | None = None,
        clock: Clock | None = None,
        button: SoftButton | None = None,
        name: str | None = None,
        reconnect: bool = False,
    ) -> None:
        cam = scenario.camera
        self.scenario = scenario
        self.name = name or Path(scenario.name).stem
        self.realtime = cam.realtime if realtime is None else realtime
        self._clock = clock or SystemClock()
        self.button = button or SoftButton(clock=self._clock)
        self._renderer = SceneRenderer(scenario)
        self._drawer = Worker(f"sim-{self.name}")  # draws real-time frames (started on use)
        self._encoder = self._new_encoder()
        self._info = StreamInfo(
            cam.width, cam.height, Fraction(cam.fps), "h264" if cam.h264 else None
        )
        self._next_index = 0
        self._pending_presses = sorted(scenario.presses, key=lambda p: p.at_s)
        self._fired_disconnects: set[int] = set()
        self._fired_hangs: set[int] = set()
        self._reconnect = reconnect
        self._closing = asyncio.Event()
        self.reconnecting = (
            False  # only with ``reconnect``: between a disconnect and the next frame
        )
        self._start_monotonic: float | None = None
        self._start_wall = scenario.camera.start.timestamp()
        self._closed = False
        self.microphone = (
            SimulatedMicrophone(
                tone_hz=cam.tone_hz,
                seconds=cam.seconds,
                presses=[(p.at_s, p.hold_s) for p in scenario.presses],
                clock=self._clock,
                origin=self._origin,
                realtime=self.realtime,
            )
            if cam.audio
            else None
        )
        self.speaker = SimulatedSpeaker()

    @property
    def info(self) -> StreamInfo:
        """The scenario's picture size and rate; codec ``"h264"`` when it asks for packets."""
        return self._info

    @property
    def frame_count(self) -> int:
        """How many frame indices the run spans (delivered or not)."""
        return self.scenario.camera.frame_count

    @property
    def motion_masks(self) -> tuple[Polygon, ...]:
        """What a motion detector must not watch: the scenario's masks, then the frame-counter
        strip across the top rows (it changes every frame)."""
        cam = self.scenario.camera
        top = strip_rows(cam.width) / cam.height
        strip = ((0.0, 0.0), (1.0, 0.0), (1.0, top), (0.0, top))
        return (*self.scenario.motion_masks, strip)

    @property
    def motion_sensitivity(self) -> float | None:
        """The scenario's detector sensitivity, or None to keep the configured one."""
        return self.scenario.motion_sensitivity

    def truth(self, index: int) -> frozenset[str]:
        """Ids of the actors visible in frame ``index`` (without rendering it)."""
        return self._renderer.truth(index / self.scenario.camera.fps)

    def truth_spans(self) -> tuple[TruthSpan, ...]:
        """Every run of consecutive frames in which an actor is visible, in order of start."""
        open_spans: dict[str, int] = {}
        spans: list[TruthSpan] = []
        for index in range(self.frame_count + 1):
            visible = self.truth(index) if index < self.frame_count else frozenset()
            for actor_id in visible - open_spans.keys():
                open_spans[actor_id] = index
            for actor_id in sorted(open_spans.keys() - visible):
                spans.append(TruthSpan(actor_id, open_spans.pop(actor_id), index - 1))
        return tuple(sorted(spans, key=lambda s: (s.first_index, s.actor_id)))

    def skipped_indices(self) -> frozenset[int]:
        """Frame indices the scenario's faults keep from ever being delivered (drops, outages,
        hangs)."""
        fps = self.scenario.camera.fps
        skipped = set()
        for index in range(self.frame_count):
            t = index / fps
            outages = (*self.scenario.faults_of("disconnect"), *self.scenario.faults_of("hang"))
            if self._dropped(index, t) or any(f.active(t) for f in outages):
                skipped.add(index)
        return frozenset(skipped)

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames from where the last iteration stopped; raises CameraDisconnected on that fault."""
        fps = self.scenario.camera.fps
        self._origin()
        while not self._closed and self._next_index < self.frame_count:
            index = self._next_index
            t = index / fps
            self._next_index += 1
            self._emit_presses(t)  # the button is not the camera: it works through outages
            try:
                self._check_disconnect(index, t)
            except CameraDisconnected:
                if not self._reconnect:
                    raise
                self.reconnecting = True  # until the first frame after the outage
                continue
            if await self._hang(index, t):
                continue
            if self._dropped(index, t):
                logger.debug("camera.frame_dropped camera=%s index=%s", self.name, index)
                continue
            if self.realtime:
                # Drawn on the camera's own thread while the frame is not yet due, as a real
                # sensor's picture is ready at its capture time: the drawing (milliseconds at
                # 720p) neither delays the frame nor holds up the event loop.
                drawing = self._drawer.run(self._frame, index, t)
                wait_s = self._due_s(t) - self._clock.monotonic()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                frame = await drawing
            else:
                frame = self._frame(index, t)
            if self.reconnecting:
                self.reconnecting = False
                logger.info("camera.connected camera=%s at_s=%s", self.name, t)
            yield frame
            if not self.realtime:
                await asyncio.sleep(0)  # let other cameras and tasks run between frames

    async def close(self) -> None:
        """Stop delivering frames; close the microphone (if any) and the button."""
        self._closed = True
        self._closing.set()
        self._drawer.shutdown()
        if self.microphone is not None:
            self.microphone.close()
        await self.button.close()

    def _origin(self) -> float:
        """When the camera started on ``clock.monotonic()``: its first frame or sound starts it."""
        if self._start_monotonic is None:
            self._start_monotonic = self._clock.monotonic()
            if self.realtime:
                self._start_wall = self._clock.now()
        return self._start_monotonic

    def _new_encoder(self) -> X264Encoder | None:
        cam = self.scenario.camera
        if not cam.h264:
            return None
        return X264Encoder(cam.width, cam.height, cam.fps, keyint=KEYFRAME_INTERVAL_S * cam.fps)

    def _frame(self, index: int, t: float) -> Frame:
        y, u, v, truth = self._renderer.render(index)
        packet = None
        if self._encoder is not None:
            packets = self._encoder.encode(y, u, v, index)
            packet = self._corrupt(packets[0], index, t) if packets else None
        return Frame(index, t, self._wall_s(t), y, u, v, truth, packet)

    def _wall_s(self, t: float) -> float:
        """Capture time: from the scenario's ``start`` (virtual) or the clock at the first frame."""
        return (
            self._start_wall
            + t
            + sum(f.jump_s for f in self.scenario.faults_of("clock_jump") if f.at_s <= t)
        )

    def _due_s(self, t: float) -> float:
        """Monotonic time at which the frame captured at ``t`` is delivered (stalls delay it)."""
        assert self._start_monotonic is not None
        due = t
        for stall in self.scenario.faults_of("stall"):
            if stall.active(t):
                due = max(due, stall.end_s)
        return self._start_monotonic + due

    def _check_disconnect(self, index: int, t: float) -> None:
        for i, fault in enumerate(self.scenario.faults):
            if fault.kind == "disconnect" and fault.active(t) and i not in self._fired_disconnects:
                self._fired_disconnects.add(i)
                self._next_index = max(
                    index, math.ceil(fault.end_s * self.scenario.camera.fps - 1e-9)
                )
                self._encoder = self._new_encoder()  # the stream restarts with a keyframe
                logger.info("camera.disconnected camera=%s at_s=%s", self.name, t)
                raise CameraDisconnected(
                    f"camera {self.name}: disconnected at {t:.3f} s (simulated fault; "
                    f"it is back at {fault.end_s:.3f} s: iterate frames() again)"
                )

    async def _hang(self, index: int, t: float) -> bool:
        """At a ``hang`` fault: in real time, deliver nothing until it ends (or the camera is
        closed); either way skip to the first frame after it. Whether a hang began here."""
        for i, fault in enumerate(self.scenario.faults):
            if fault.kind != "hang" or not fault.active(t) or i in self._fired_hangs:
                continue
            self._fired_hangs.add(i)
            logger.info("camera.hung camera=%s at_s=%s", self.name, t)
            if math.isinf(fault.end_s):
                self._next_index = self.frame_count
                if self.realtime:
                    await self._closing.wait()
            else:
                self._next_index = max(
                    index, math.ceil(fault.end_s * self.scenario.camera.fps - 1e-9)
                )
            return True
        return False

    def _emit_presses(self, t: float) -> None:
        while self._pending_presses and self._pending_presses[0].at_s <= t + 1e-9:
            press = self._pending_presses.pop(0)
            if press.hold_s > 0:
                self.button.hold(press.hold_s, at_s=press.at_s)
            else:
                self.button.press(at_s=press.at_s)

    def _dropped(self, index: int, t: float) -> bool:
        fps = self.scenario.camera.fps
        for fault in self.scenario.faults_of("drop_frames"):
            if fault.active(t):
                first = math.ceil(fault.at_s * fps - 1e-9)
                if (index - first) % fault.every == 0:
                    return True
        return False

    def _corrupt(self, packet: EncodedPacket, index: int, t: float) -> EncodedPacket:
        faults: list[Fault] = [f for f in self.scenario.faults_of("corrupt_packets") if f.active(t)]
        if not faults:
            return packet
        data = bytearray(packet.data)
        rng = np.random.default_rng([self.scenario.camera.seed, index, 0xC0])
        for fault in faults:
            # Leave the start code and NAL header alone so the damage lands in slice data.
            for pos in rng.integers(min(5, len(data) - 1), len(data), size=fault.flips):
                data[pos] ^= 0xFF
        return EncodedPacket(bytes(data), packet.pts, packet.dts, packet.time_base, packet.keyframe)
