"""Polygon rasterising for privacy zones and motion masks: which sample points lie inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from device._config import Polygon

__all__ = ["rasterise"]

Coords = npt.NDArray[np.floating[Any]]


def rasterise(polygons: Sequence[Polygon], xs: Coords, ys: Coords) -> npt.NDArray[np.bool_]:
    """A ``len(ys)`` x ``len(xs)`` mask of the points (x, y) inside any polygon (even-odd rule).

    ``xs`` and ``ys`` are the normalised (0..1) centres of the sampled columns and rows; the sums
    run in their dtype, so a float32 grid gives exactly the float32 answer. A point on a left or
    top edge is inside, one on a right or bottom edge is not, so polygons sharing an edge never
    both claim a point.
    """
    inside = np.zeros((len(ys), len(xs)), dtype=np.bool_)
    if not polygons:
        return inside
    gx, gy = np.meshgrid(xs, ys)
    for polygon in polygons:
        hit = np.zeros(inside.shape, dtype=np.bool_)
        points = list(polygon)
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
            if y0 == y1:
                continue
            crosses = (gy >= min(y0, y1)) & (gy < max(y0, y1))
            x_at = x0 + (gy - y0) * (x1 - x0) / (y1 - y0)
            hit ^= crosses & (gx < x_at)
        inside |= hit
    return inside
