"""A simulated two-stream camera: the scenario's scene as an H.264 main stream and a small
detect substream, so the harness judges a two-stream camera against the same ground truth.

The main stream is the scenario's own camera (its size, rate, frame-counter strip and faults);
the substream renders the same scene (same seed, same actors, same lights) at ``detect_width`` x
``detect_height`` and ``detect_fps``, delivered as pictures. Two faults act on the substream only:
``detect_stop`` (it delivers nothing while the fault lasts) and ``detect_resize`` (its pictures
come at another size meanwhile).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from hardware._clock import Clock
from hardware._frames import Frame, StreamInfo, StreamPacket
from hardware._packets import RecordStream
from hardware._two_streams import TwoStreamCamera, fit_plane
from hardware.sim._scenario_schema import Polygon
from hardware.sim.camera import SimulatedCamera
from hardware.sim.scenario import Scenario

__all__ = ["SimulatedRecordStream", "two_stream_camera"]

# Faults of the camera as a whole: they stop or delay both of its streams.
_SHARED_FAULTS = ("disconnect", "hang", "stall", "clock_jump")


def two_stream_camera(
    scenario: Scenario,
    *,
    realtime: bool | None = None,
    clock: Clock | None = None,
    name: str | None = None,
    reconnect: bool = False,
) -> TwoStreamCamera:
    """The scenario's camera with its detect substream (``scenario.camera.two_streams``)."""
    cam = scenario.camera
    if cam.detect_width is None or cam.detect_height is None:
        raise ValueError(f"scenario {scenario.name} has no detect stream (detect_width/height)")
    main = SimulatedCamera(scenario, realtime=realtime, clock=clock, name=name, reconnect=reconnect)
    sub = replace(
        scenario,
        camera=replace(
            cam,
            width=cam.detect_width,
            height=cam.detect_height,
            fps=cam.detect_fps or cam.fps,
            h264=False,
            audio=False,
            detect_width=None,
            detect_height=None,
            detect_fps=None,
        ),
        presses=(),
        faults=tuple(f for f in scenario.faults if f.kind in _SHARED_FAULTS),
    )
    detect = _SimulatedDetect(
        SimulatedCamera(
            sub, realtime=main.realtime, clock=clock, name=f"{main.name}-detect", reconnect=True
        ),
        scenario,
    )
    return TwoStreamCamera(
        SimulatedRecordStream(main), detect, name=main.name, realtime=main.realtime, clock=clock
    )


class SimulatedRecordStream(RecordStream):
    """The main SimulatedCamera's packets as a record stream (its pictures are only encoded)."""

    def __init__(self, camera: SimulatedCamera) -> None:
        self.camera = camera
        self.name = camera.name

    @property
    def info(self) -> StreamInfo:
        """The main stream's size, rate and codec (H.264)."""
        return self.camera.info

    @property
    def button(self) -> object:
        """The camera's doorbell button (the scenario's presses)."""
        return self.camera.button

    @property
    def microphone(self) -> object:
        """The camera's microphone, or None."""
        return self.camera.microphone

    @property
    def reconnecting(self) -> bool:
        """Whether the camera is in a disconnect outage."""
        return self.camera.reconnecting

    async def packets(self) -> AsyncIterator[StreamPacket]:
        """The main stream's packets, one per frame delivered."""
        async for frame in self.camera.frames():
            if frame.packet is not None:
                yield StreamPacket(
                    frame.index, frame.pts_s, frame.wall_s, frame.packet, frame.truth
                )

    async def close(self) -> None:
        """Stop the camera."""
        await self.camera.close()


class _SimulatedDetect:
    """The substream camera with the scenario's detect faults applied."""

    def __init__(self, camera: SimulatedCamera, scenario: Scenario) -> None:
        self.camera = camera
        self.name = camera.name
        self._stops = scenario.faults_of("detect_stop")
        self._resizes = scenario.faults_of("detect_resize")

    @property
    def info(self) -> StreamInfo:
        return self.camera.info

    @property
    def motion_masks(self) -> tuple[Polygon, ...]:
        return self.camera.motion_masks

    @property
    def motion_sensitivity(self) -> float | None:
        return self.camera.motion_sensitivity

    async def frames(self) -> AsyncIterator[Frame]:
        async for frame in self.camera.frames():
            t = frame.pts_s
            if any(f.active(t) for f in self._stops):
                continue
            resize = next((f for f in self._resizes if f.active(t)), None)
            if resize is not None:
                w, h = resize.width, resize.height
                frame = replace(
                    frame,
                    y=fit_plane(frame.y, w, h),
                    u=fit_plane(frame.u, w // 2, h // 2),
                    v=fit_plane(frame.v, w // 2, h // 2),
                )
            yield frame

    async def close(self) -> None:
        await self.camera.close()
