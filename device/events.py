"""What a camera pipeline reports while it runs: one frozen record per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass

from device._motion import Box

__all__ = [
    "ClipFinished",
    "ClipStarted",
    "DetectStreamLost",
    "DetectStreamRestored",
    "DeviceEvent",
    "DoorbellPressed",
    "MotionDetected",
    "RecordingError",
    "SegmentWritten",
]


@dataclass(frozen=True, slots=True)
class MotionDetected:
    """Motion started on ``camera`` at source time ``pts_s`` (reported on the rising edge only)."""

    camera: str
    pts_s: float
    score: float
    regions: tuple[Box, ...]  # normalised


@dataclass(frozen=True, slots=True)
class ClipStarted:
    """A clip was opened; ``start_s`` is the UTC epoch time of its first (pre-roll) frame."""

    camera: str
    clip_id: str
    start_s: float


@dataclass(frozen=True, slots=True)
class ClipFinished:
    """A clip was closed with ``segments`` segments; ``end_s`` is UTC epoch seconds."""

    camera: str
    clip_id: str
    end_s: float
    segments: int


@dataclass(frozen=True, slots=True)
class DoorbellPressed:
    """The doorbell button was pressed; ``pts_s`` is the source time of the frame it applied to."""

    camera: str
    pts_s: float


@dataclass(frozen=True, slots=True)
class SegmentWritten:
    """Encrypted segment ``index`` of ``clip_id`` is durably on disk (``size`` bytes of age file)."""

    camera: str
    clip_id: str
    index: int
    size: int


@dataclass(frozen=True, slots=True)
class RecordingError:
    """Recording failed or degraded (disk full, no recipients, I/O error); the pipeline carries on."""

    camera: str
    message: str


@dataclass(frozen=True, slots=True)
class DetectStreamLost:
    """A two-stream camera's detect stream stopped: motion now decodes the main stream (which
    costs more), recording goes on. ``reason`` says what happened."""

    camera: str
    reason: str


@dataclass(frozen=True, slots=True)
class DetectStreamRestored:
    """A two-stream camera's detect stream delivers again: motion is back on it."""

    camera: str


DeviceEvent = (
    MotionDetected
    | ClipStarted
    | ClipFinished
    | DoorbellPressed
    | SegmentWritten
    | RecordingError
    | DetectStreamLost
    | DetectStreamRestored
)
