"""The cell grid arithmetic of the motion detector: pooling, interpolation, median, grouping.

Why cells rather than per-pixel labelling: boxes only need to be about a block accurate before
they are tightened to the changed samples inside, the block grid has about a hundred squares
(few enough to be the bits of one integer, where a flood fill step is a handful of shifts),
and the same cell grid already serves the lighting correction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from device._motion_config import _GAIN_RANGE

_F32 = npt.NDArray[np.floating[Any]]  # float32 in practice


def _clip_gain(gain: _F32) -> None:
    """Limit per-cell gains to _GAIN_RANGE in place (np.clip costs several times more here)."""
    np.maximum(gain, _GAIN_RANGE[0], out=gain)
    np.minimum(gain, _GAIN_RANGE[1], out=gain)


class _Median3:
    """Separable 3x3 median of one cell grid, in place: of 3 along each row, then each column.

    The border repeats, which leaves border values as they are along that axis (the median of
    a, a, b is a), so only the interior is computed. The views are made once: the caller fills
    ``grid`` in and calls this.
    """

    def __init__(self, grid: _F32) -> None:
        # (before, value, after) along rows, then along columns; value is the interior.
        passes = ((grid[:, :-2], grid[:, 1:-1], grid[:, 2:]), (grid[:-2], grid[1:-1], grid[2:]))
        self._passes = [(*p, np.empty_like(p[1]), np.empty_like(p[1])) for p in passes]

    def __call__(self) -> None:
        for before, value, after, low, high in self._passes:
            # median(before, value, after) = max(min(before, after), min(max(before, after), value))
            np.minimum(before, after, out=low)
            np.maximum(before, after, out=high)
            np.minimum(high, value, out=high)
            np.maximum(low, high, out=value)  # every read is done: overwrite in place


def _pool_matrix(n: int, cell: int) -> _F32:
    """n x cells matrix with ones where a sampled pixel falls in a cell (sums pixels per cell)."""
    cells = math.ceil(n / cell)
    m = np.zeros((n, cells), dtype=np.float32)
    m[np.arange(n), np.arange(n) // cell] = 1.0
    return m


def _lerp_matrix(n: int, cell: int) -> _F32:
    """n x cells matrix interpolating per-cell values linearly between cell centres."""
    cells = math.ceil(n / cell)
    centres = np.array(
        [(c * cell + min(n, (c + 1) * cell)) / 2 for c in range(cells)], dtype=np.float64
    )
    m = np.zeros((n, cells), dtype=np.float32)
    for i in range(n):
        x = i + 0.5
        if cells == 1 or x <= centres[0]:
            m[i, 0] = 1.0
        elif x >= centres[-1]:
            m[i, -1] = 1.0
        else:
            j = int(np.searchsorted(centres, x)) - 1
            t = (x - centres[j]) / (centres[j + 1] - centres[j])
            m[i, j], m[i, j + 1] = 1.0 - t, t
    return m


def _components(active: int, stride: int) -> Iterator[int]:
    """8-connected groups of the set bits of ``active``, lowest first, each as a bit mask.

    Bit ``r * stride + c`` is grid square (r, c); the last column must be clear. Each group grows
    from its lowest bit by shifts (one square sideways, one row up and down) until it stops
    changing; the clear column keeps a sideways shift from reaching the neighbouring row.
    """
    while active:
        group = active & -active
        while True:
            row = group | (group << 1) | (group >> 1)
            grown = (row | (row << stride) | (row >> stride)) & active
            if grown == group:
                break
            group = grown
        active ^= group
        yield group
