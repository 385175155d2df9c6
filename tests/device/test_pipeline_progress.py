"""A pipeline's progress stamps (device.pipeline.PipelineProgress), read as the service's watchdog
reads them (hub.server.health): a wedged disk write and a disk that stays full are told apart
from a pipeline that records."""

from __future__ import annotations

import asyncio

import pytest

from crypto import age
from device import CameraPipeline, ClipStore, PipelineProgress, RecorderConfig
from device.harness import FaultyStore, StorageFaults
from hardware import Frame
from hub.server.health import CameraReport, CameraState, Deadlines, WriterReport, judge
from tests.device.kit import camera

pytestmark = pytest.mark.timeout(60)

DEADLINES = Deadlines(stall_s=1.5, segment_s=2.0)


class FrameClock:
    """Monotonic time = the capture time of the last frame delivered (set from on_frame)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def state(progress: PipelineProgress, now_s: float) -> CameraState:
    (verdict,) = judge([CameraReport("front", progress)], WriterReport(), now_s, DEADLINES).cameras
    return verdict.state


async def record(store: object, owner: age.X25519Identity, at_pts_s: float) -> PipelineProgress:
    """Run a pipeline over 8 s with a press at 1 s; its progress when the frame at ``at_pts_s`` was
    delivered."""
    clock = FrameClock()
    source = camera(8, presses=[1.0], fps=10)
    seen: list[PipelineProgress] = []

    def on_frame(frame: Frame, _result: object) -> None:
        clock.t = frame.pts_s
        if abs(frame.pts_s - at_pts_s) < 1e-6:
            seen.append(pipeline.progress)

    pipeline = CameraPipeline(
        "front",
        source,
        store,  # type: ignore[arg-type]
        lambda: [owner.recipient()],
        button=source.button,
        on_frame=on_frame,
        config=RecorderConfig(post_roll_s=5),
        clock=clock,
    )
    await pipeline.run()
    assert pipeline.progress.finished
    (progress,) = seen
    return progress


@pytest.mark.asyncio
async def test_a_recording_pipeline_writes_segments_in_time(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    progress = await record(store, owner, at_pts_s=5.0)
    assert progress.recording_since_s is not None
    assert progress.recording_since_s <= 1.0
    assert progress.segments >= 1
    assert progress.last_segment_s is not None
    assert progress.frames == 51  # frames 0 to 50
    assert state(progress, 5.0) is CameraState.RECORDING


@pytest.mark.asyncio
async def test_a_disk_that_stays_full_is_judged_not_writing(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    faults = StorageFaults()
    faults.set_disk_full(True)
    progress = await record(FaultyStore(store, faults), owner, at_pts_s=5.0)
    assert progress.segments == 0
    assert progress.last_segment_s is None
    assert progress.recording_since_s is not None
    assert state(progress, 5.0) is CameraState.NOT_WRITING


@pytest.mark.asyncio
async def test_a_write_that_never_returns_is_judged_wedged(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    faults = StorageFaults()
    faults.block()
    source = camera(8, presses=[0.5], fps=10)
    pipeline = CameraPipeline(
        "front",
        source,
        FaultyStore(store, faults),
        lambda: [owner.recipient()],
        button=source.button,
    )
    run = asyncio.ensure_future(pipeline.run())
    try:
        await asyncio.to_thread(faults.waiting.wait, 30)  # the worker is stuck inside a write
        progress = pipeline.progress
        assert progress.busy_since_s is not None
        assert state(progress, progress.busy_since_s + 1.0) is CameraState.RECORDING
        assert state(progress, progress.busy_since_s + 1.6) is CameraState.WEDGED
    finally:
        faults.unblock()
    await run
    assert pipeline.progress.busy_since_s is None
