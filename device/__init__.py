"""Doorward's recording side: motion detection, the recorder, encrypted segments and the clip store.

Common case::

    store = ClipStore(data_dir, DeviceIdentity.load_or_create(key_path))
    pipeline = CameraPipeline("front", camera, store, owner_recipients, detector=detector)
    await pipeline.run()
"""

import logging

from device._config import Polygon, RecorderConfig
from device._motion import Box, MotionConfig, MotionDetector, MotionResult
from device._recorder import Recorder, RecorderAction, RecorderState
from device._segmenter import ClipSink
from device.detector import MotionHints, detector_for
from device.errors import ClipHeld, ClipRefused, DeviceError, StoreError
from device.events import (
    ClipFinished,
    ClipStarted,
    DetectStreamLost,
    DetectStreamRestored,
    DeviceEvent,
    DoorbellPressed,
    MotionDetected,
    RecordingError,
    SegmentWritten,
)
from device.pipeline import CameraPipeline, PipelineProgress, PipelineStats
from device.store import ClipRecord, ClipSeal, ClipStore, SegmentRecord

__all__ = [
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

logging.getLogger(__name__).addHandler(logging.NullHandler())
