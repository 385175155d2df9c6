"""The watchdog's judgement (hub.server.health): which camera states stop the pings, at a given now."""

from __future__ import annotations

import pytest

from device import PipelineProgress
from hub.server.health import (
    CameraReport,
    CameraState,
    Deadlines,
    WriterReport,
    judge,
    status_line,
)

DEADLINES = Deadlines(stall_s=20.0, segment_s=2.0)
IDLE_WRITER = WriterReport()


def one(report: CameraReport, now_s: float, writer: WriterReport = IDLE_WRITER) -> CameraState:
    (verdict,) = judge([report], writer, now_s, DEADLINES).cameras
    return verdict.state


def moving(last_frame_s: float = 100.0, **more: float | None) -> PipelineProgress:
    return PipelineProgress(started_s=0.0, last_frame_s=last_frame_s, frames=10, **more)  # type: ignore[arg-type]


def test_a_camera_taking_frames_records_and_is_pinged_for() -> None:
    health = judge([CameraReport("front", moving())], IDLE_WRITER, 105.0, DEADLINES)
    assert health.ok
    assert health.recording
    assert health.cameras[0].state is CameraState.RECORDING


def test_no_frame_past_the_deadline_is_a_stall() -> None:
    report = CameraReport("front", moving(last_frame_s=100.0))
    assert one(report, 120.0) is CameraState.RECORDING  # at the deadline, not past it
    assert one(report, 120.5) is CameraState.STALLED
    assert not judge([report], IDLE_WRITER, 120.5, DEADLINES).ok


def test_a_reconnecting_camera_is_not_stuck_however_long_it_backs_off() -> None:
    report = CameraReport("front", moving(last_frame_s=100.0), reconnecting=True)
    health = judge([report], IDLE_WRITER, 1000.0, DEADLINES)
    assert health.cameras[0].state is CameraState.RECONNECTING
    assert health.cameras[0].quiet_s == 900.0
    assert health.ok


def test_a_frame_in_the_worker_past_the_deadline_is_wedged_even_while_reconnecting() -> None:
    progress = moving(last_frame_s=100.0, busy_since_s=101.0)
    assert one(CameraReport("front", progress), 121.0) is CameraState.RECORDING
    assert one(CameraReport("front", progress), 121.5) is CameraState.WEDGED
    assert one(CameraReport("front", progress, reconnecting=True), 121.5) is CameraState.WEDGED


def test_recording_without_a_segment_reaching_the_disk_is_not_writing() -> None:
    recording = moving(last_frame_s=200.0, recording_since_s=100.0)
    assert one(CameraReport("front", recording), 122.0) is CameraState.RECORDING
    assert one(CameraReport("front", recording), 122.5) is CameraState.NOT_WRITING
    written = moving(last_frame_s=200.0, recording_since_s=100.0, last_segment_s=190.0)
    assert one(CameraReport("front", written), 200.0) is CameraState.RECORDING
    assert one(CameraReport("front", written), 212.5) is CameraState.NOT_WRITING


def test_a_failed_pipeline_is_stuck_and_one_that_ended_is_not() -> None:
    assert one(CameraReport("front", moving(), error="RuntimeError"), 101.0) is CameraState.FAILED
    ended = PipelineProgress(started_s=0.0, last_frame_s=1.0, finished=True)
    assert one(CameraReport("front", ended), 1000.0) is CameraState.ENDED


def test_before_its_first_frame_a_camera_is_starting_then_stalled() -> None:
    fresh = CameraReport("front", PipelineProgress(started_s=50.0))
    health = judge([fresh], IDLE_WRITER, 60.0, DEADLINES)
    assert health.cameras[0].state is CameraState.STARTING
    assert health.ok
    assert not health.recording
    assert one(fresh, 71.0) is CameraState.STALLED


def test_one_stuck_camera_stops_the_pings_for_all() -> None:
    good = CameraReport("back", moving())
    bad = CameraReport("front", moving(busy_since_s=0.0))
    health = judge([good, bad], IDLE_WRITER, 100.0, DEADLINES)
    assert [c.state for c in health.cameras] == [CameraState.RECORDING, CameraState.WEDGED]
    assert not health.ok


def test_a_writer_call_waiting_past_the_deadline_stops_the_pings() -> None:
    report = CameraReport("front", moving())
    assert judge([report], WriterReport(3, 90.0), 105.0, DEADLINES).ok
    stuck = judge([report], WriterReport(3, 80.0), 105.0, DEADLINES)
    assert not stuck.ok
    assert stuck.writer_stuck_s == 25.0


def test_the_status_line_reads_as_a_sentence() -> None:
    health = judge(
        [
            CameraReport("front", moving()),
            CameraReport("back", moving(last_frame_s=90.0), reconnecting=True),
        ],
        WriterReport(2, 104.0),
        105.0,
        DEADLINES,
    )
    assert status_line(health, owners=1, connections=3) == (
        "front recording, back reconnecting 15s; 1 owner; writer queue 2; 3 connections"
    )
    wedged = judge(
        [CameraReport("front", moving(busy_since_s=70.0))], WriterReport(1, 70.0), 105.0, DEADLINES
    )
    assert status_line(wedged, owners=0, connections=1) == (
        "front wedged 35s; 0 owners; writer queue 1 (stuck 35s); 1 connection"
    )


def test_deadlines_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"stall_s must be > 0, got 0"):
        Deadlines(stall_s=0, segment_s=2.0)


def test_a_busy_worker_still_has_to_write_segments_while_recording() -> None:
    busy = moving(last_frame_s=100.0, busy_since_s=130.0, recording_since_s=100.0)
    assert one(CameraReport("front", busy), 130.5) is CameraState.NOT_WRITING
