"""The frame counter strip: exact round trip, after real H.264 compression, and rejection."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.sim import StripReading, read_strip, strip_rows
from hardware.sim.strip import draw_strip
from tests.hardware._media import rendered, x264_round_trip


@pytest.mark.parametrize(("width", "rows"), [(160, 8), (320, 16), (640, 32), (1920, 32)])
def test_strip_size(width: int, rows: int) -> None:
    assert strip_rows(width) == rows


@pytest.mark.parametrize(("counter", "timestamp_ms"), [(0, 0), (1, 67), (2**32 - 1, 2**32 - 1)])
def test_exact_round_trip(counter: int, timestamp_ms: int) -> None:
    y = np.full((96, 160), 128, np.uint8)
    draw_strip(y, counter, timestamp_ms)
    assert read_strip(y) == StripReading(counter, timestamp_ms)
    assert (y[strip_rows(160) :] == 128).all()  # nothing drawn below the strip


def test_damaged_strip_reads_as_none() -> None:
    y = np.zeros((240, 320), np.uint8)
    assert read_strip(y) is None  # all black: the check does not match
    draw_strip(y, 1234, 5678)
    y[:8, 8:16] = 255 - y[:8, 8:16]  # flip one block
    assert read_strip(y) is None
    assert read_strip(np.zeros((4, 320), np.uint8)) is None  # too small to hold a strip


@pytest.mark.parametrize(("width", "height"), [(320, 240), (640, 360)])
def test_strip_survives_libx264(width: int, height: int) -> None:
    pictures = rendered(20, width, height)
    lumas = x264_round_trip(pictures, crf=35)
    assert len(lumas) == 20
    readings = [read_strip(y) for y in lumas]
    assert readings == [StripReading(i, round(i * 1000 / 15)) for i in range(20)]
    # The compression really did change the strip's pixels.
    assert not np.array_equal(lumas[5][: strip_rows(width)], pictures[5][0][: strip_rows(width)])
