"""The motion detector for one camera: the configured masks and sensitivity, plus the camera's own.

A source may know what its detector must not watch or how sensitive it should be (the simulated
camera does: its scenario's masks and sensitivity, and the frame-counter strip it draws across the
top rows, which changes every frame). It says so through :class:`MotionHints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from device._config import Polygon
from device._motion import MotionConfig, MotionDetector
from hardware import CameraSource, TwoStreamCamera

__all__ = ["MotionHints", "detector_for"]


@runtime_checkable
class MotionHints(Protocol):
    """A source's own motion settings: regions never to watch, and a sensitivity (None: keep)."""

    @property
    def motion_masks(self) -> Sequence[Polygon]:
        """Polygons the detector must not watch, in normalised 0..1 picture coordinates."""
        ...

    @property
    def motion_sensitivity(self) -> float | None:
        """The source's detector sensitivity, or None to keep the configured one."""
        ...


def detector_for(source: CameraSource, config: MotionConfig | None = None) -> MotionDetector:
    """A detector for ``source``'s picture size (a two-stream camera's detect stream's): ``config``
    (default: MotionConfig()) with the source's masks added and its sensitivity, when it has one,
    in place of the configured one."""
    base = config or MotionConfig()
    info = source.detect_info if isinstance(source, TwoStreamCamera) else source.info
    if isinstance(source, MotionHints):
        sensitivity = source.motion_sensitivity
        base = replace(
            base,
            masks=(*base.masks, *source.motion_masks),
            sensitivity=base.sensitivity if sensitivity is None else sensitivity,
        )
    return MotionDetector(base, info.width, info.height)
