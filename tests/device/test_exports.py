"""The device package's public names, pinned."""

from __future__ import annotations

import device


def test_all_is_pinned() -> None:
    assert sorted(device.__all__) == [
        "Box",
        "CameraPipeline",
        "ClipFinished",
        "ClipHeld",
        "ClipRecord",
        "ClipRefused",
        "ClipSeal",
        "ClipSink",
        "ClipStarted",
        "ClipStore",
        "DetectStreamLost",
        "DetectStreamRestored",
        "DeviceError",
        "DeviceEvent",
        "DoorbellPressed",
        "MotionConfig",
        "MotionDetected",
        "MotionDetector",
        "MotionHints",
        "MotionResult",
        "PipelineProgress",
        "PipelineStats",
        "Polygon",
        "Recorder",
        "RecorderAction",
        "RecorderConfig",
        "RecorderState",
        "RecordingError",
        "SegmentRecord",
        "SegmentWritten",
        "StoreError",
        "detector_for",
    ]
    for name in device.__all__:
        assert getattr(device, name) is not None
