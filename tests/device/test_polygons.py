"""One rasteriser for privacy zones and motion masks: hand-checked masks, in both precisions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from device import MotionConfig, MotionDetector
from device._config import Polygon
from device._polygons import rasterise
from device._privacy import PrivacyMask

# The example config's privacy zone: the top-left corner, touching two frame edges.
CORNER: Polygon = ((0.0, 0.0), (0.35, 0.0), (0.35, 0.5), (0.0, 0.5))


def _centres(n: int, dtype: type[np.floating]) -> npt.NDArray[np.floating]:
    return (np.arange(n, dtype=dtype) + 0.5) / n


def _grid(*rows: str) -> npt.NDArray[np.bool_]:
    return np.array([[c == "#" for c in row] for row in rows])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("polygon", "expected"),
    [
        (
            ((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)),
            _grid("........", "..####..", "..####..", "........"),
        ),
        (
            ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)),
            _grid("#######.", "#####...", "###.....", "#......."),
        ),
        (  # edges through sample centres: left and top edges are in, right and bottom out
            ((0.0625, 0.125), (0.5625, 0.125), (0.5625, 0.625), (0.0625, 0.625)),
            _grid("####....", "####....", "........", "........"),
        ),
        (
            ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)),
            _grid("########", "########", "########", "########"),
        ),
        (
            ((0.5, 0.0), (1.0, 0.0), (1.0, 0.5)),
            _grid(".....###", ".......#", "........", "........"),
        ),
    ],
    ids=["rectangle", "triangle", "edges through centres", "whole frame", "on two frame edges"],
)
def test_hand_checked_masks(polygon: Polygon, expected: npt.NDArray[np.bool_], dtype) -> None:
    # 8 x 4 samples: column centres 1/16, 3/16 … 15/16; row centres 1/8, 3/8, 5/8, 7/8.
    assert np.array_equal(rasterise((polygon,), _centres(8, dtype), _centres(4, dtype)), expected)


def test_no_polygons_and_overlapping_polygons() -> None:
    xs, ys = _centres(8, np.float64), _centres(4, np.float64)
    assert not rasterise((), xs, ys).any()
    left = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    middle = ((0.25, 0.0), (0.75, 0.0), (0.75, 1.0), (0.25, 1.0))
    assert np.array_equal(rasterise((left, middle), xs, ys), _grid(*["######.."] * 4))


def test_privacy_mask_blacks_out_the_example_corner() -> None:
    mask = PrivacyMask((CORNER,), 640, 360)
    y = np.full((360, 640), 200, dtype=np.uint8)
    u = np.full((180, 320), 90, dtype=np.uint8)
    out_y, out_u, _ = mask.apply(y, u, u)
    # Luma column centres below 0.35: (i + 0.5) / 640 < 0.35, so i < 223.5; rows i < 179.5.
    expected_y = np.full((360, 640), 200, dtype=np.uint8)
    expected_y[:180, :224] = 16
    expected_u = np.full((180, 320), 90, dtype=np.uint8)
    expected_u[:90, :112] = 128
    assert np.array_equal(out_y, expected_y)
    assert np.array_equal(out_u, expected_u)


def test_motion_mask_covers_the_sampled_corner() -> None:
    detector = MotionDetector(MotionConfig(masks=(CORNER,)), 640, 360)
    # 72 of 360 rows: every 5th pixel, sample centres (c + 0.5) * 5 / 640 < 0.35 for c <= 44.
    expected_keep = np.ones((72, 128), dtype=bool)
    expected_keep[:36, :45] = False
    assert np.array_equal(detector._keep, expected_keep)
