"""Privacy zones: normalised polygons painted black in every plane before a frame is encoded."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from device._config import Polygon
from device._polygons import rasterise

__all__ = ["PrivacyMask"]

Plane = npt.NDArray[np.uint8]
_BLACK_Y = 16  # video-range black (BT.601/709 limited range)
_NEUTRAL_C = 128


def _zone_mask(zones: tuple[Polygon, ...], width: int, height: int) -> npt.NDArray[np.bool_]:
    """Pixels whose centre lies inside any zone (float32 centres, as the mask has always used)."""
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    return rasterise(zones, xs, ys)


class PrivacyMask:
    """Blacks out the zones of a ``width`` x ``height`` yuv420p picture; returns new planes."""

    def __init__(self, zones: tuple[Polygon, ...], width: int, height: int) -> None:
        self._luma = _zone_mask(zones, width, height)
        self._chroma = _zone_mask(zones, width // 2, height // 2)

    def apply(self, y: Plane, u: Plane, v: Plane) -> tuple[Plane, Plane, Plane]:
        # The source's planes may be shared with other consumers (live view): never edit in place.
        return (
            np.where(self._luma, np.uint8(_BLACK_Y), y),
            np.where(self._chroma, np.uint8(_NEUTRAL_C), u),
            np.where(self._chroma, np.uint8(_NEUTRAL_C), v),
        )
