"""The motion detector's settings and records: MotionConfig, Box, MotionResult and the tuning.

The module-level constants are the detector's fixed tuning (see ``device._motion`` for how they
are used); ``MotionConfig`` holds what a user may set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device._config import Polygon

_CELL = 6  # sampled pixels per cell side (lighting correction and region labelling)
_GAIN_OFFSET = 4.0  # luma added to both sides of the gain ratio so near-black cells stay stable
_GAIN_RANGE = (0.33, 3.0)  # contrast change a cell may be corrected by
# Brightness within this of 1 needs no clipping to _GAIN_RANGE (and, being within [0.5, 2],
# its distance from 1 is exact in float32).
_GAIN_SAFE = min(0.5, 1.0 - _GAIN_RANGE[0], _GAIN_RANGE[1] - 1.0)
_SPREAD_FLOOR = 4.0  # luma spread added to every cell so flat cells are not stretched
_CELL_ACTIVE = 0.15  # fraction of a cell's pixels that must have changed for it to join a region
_MAX_REGIONS = 16
_RESIDUAL_TO_SIGMA = 3.3  # sensor sigma per unit of mean smoothed residual: 1 / (0.8 * 0.375)
_NOISE_ALPHA = 0.2  # weight of one measurement in the noise estimate
_NOISE_EVERY = 4  # frames between noise measurements
_AFFINE_RELIT = 0.2  # relit more of the picture than this: correct contrast as well
_ADAPT_FAST = 3.0  # background adapts this many times faster while the light is changing
_SATURATED = 250.0  # luma at which the sensor has clipped
_BRIGHT_MARGIN = 50.0  # look for clipped pixels once a cell's mean is this close to clipping
_STEADY = 0.02  # no cell's brightness moved more than this: skip the lighting correction
_RELIT_GAIN = 0.15  # a cell whose brightness moved by more than this fraction was relit
_RELIT_RESIDUAL = 0.03  # ... and if this much of the picture still differs, restart from it
_RESET_REST_S = 0.5  # no detection this long after such a restart
_FULL_EVERY = 32  # quiet frames between full passes (background noise and texture levels)
_QUICK_MARGIN = 0.5  # a cell's mean |difference| may exceed its quiet level by this x limit
_QUICK_ALPHA = 0.1  # weight of one quiet frame in a cell's quiet level
# A cell's mean may move by this fraction of (background mean + _GAIN_OFFSET) and still not
# count as relit in the sense of _RELIT_GAIN (the bound holds whichever way it moved).
_QUICK_STEADY = _RELIT_GAIN / (1.0 + _RELIT_GAIN)


@dataclass(frozen=True, slots=True)
class Box:
    """A region of the picture, normalised to [0, 1] (x, y: top-left corner; w, h: size)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed: ``score`` is the fraction of the watched picture that changed."""

    score: float
    motion: bool
    regions: tuple[Box, ...] = ()


_QUIET = MotionResult(0.0, False)  # what the quick check returns


@dataclass(frozen=True, slots=True)
class MotionConfig:
    """Detector settings; ``sensitivity`` in [0, 1] scales threshold and min_area (0.5 = as given).

    ``masks`` are polygons of normalised (x, y) points whose inside is never watched.
    """

    target_rows: int = 72
    threshold: float = 10.0  # luma levels a 3x3 mean must differ by, at least
    noise_factor: float = 4.0  # ... and at least this many times the mean residual on quiet frames
    min_area: float = 0.003  # fraction of the watched picture a region must cover
    sensitivity: float = 0.5
    alpha: float = 0.05  # running-average weight of each new frame in the background
    confirm_frames: int = 2
    hold_s: float = 1.0
    global_change_fraction: float = 0.5  # relit more than this at once: a light change
    settle_s: float = 2.0  # light-change handling stays on this long after the light settles
    masks: tuple[Polygon, ...] = field(default=())

    def __post_init__(self) -> None:
        if not 16 <= self.target_rows <= 1080:
            raise ValueError(f"target_rows must be in [16, 1080], got {self.target_rows}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if not self.noise_factor >= 0:
            raise ValueError(f"noise_factor must be >= 0, got {self.noise_factor}")
        if not 0 < self.min_area < 1:
            raise ValueError(f"min_area must be in (0, 1), got {self.min_area}")
        if not 0 <= self.sensitivity <= 1:
            raise ValueError(f"sensitivity must be in [0, 1], got {self.sensitivity}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.confirm_frames < 1:
            raise ValueError(f"confirm_frames must be >= 1, got {self.confirm_frames}")
        if self.hold_s < 0 or self.settle_s < 0:
            raise ValueError(
                f"hold_s and settle_s must be >= 0, got {self.hold_s} and {self.settle_s}"
            )
        if not 0 < self.global_change_fraction <= 1:
            raise ValueError(
                f"global_change_fraction must be in (0, 1], got {self.global_change_fraction}"
            )
        for i, polygon in enumerate(self.masks):
            if len(polygon) < 3:
                raise ValueError(f"masks[{i}] must have at least 3 points, got {len(polygon)}")
            for x, y in polygon:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError(f"masks[{i}] points must be in [0, 1], got ({x}, {y})")
