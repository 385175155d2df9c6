"""The machine-readable strip in the top rows of every simulated frame: frame counter + time.

Two rows of 40 square blocks, black (luma 16) for 0 and white (luma 235) for 1: a 32-bit frame
counter, a 32-bit millisecond timestamp (capture time since the run started) and a 16-bit check
(low half of the CRC-32 of both). Blocks are ``width // 40`` pixels, capped at 16, at least 4, so
the strip survives H.264 compression at 320x240 and up. Detectors must ignore ``strip_rows(width)``
rows at the top of the picture.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["StripReading", "draw_strip", "read_strip", "strip_rows"]

_COLUMNS = 40
_ROWS = 2
_BLACK, _WHITE = 16, 235


@dataclass(frozen=True, slots=True)
class StripReading:
    """What a strip says: the source's frame counter and capture time in milliseconds."""

    counter: int
    timestamp_ms: int


def block_size(width: int) -> int:
    """Side of one strip block in pixels for a picture ``width`` wide."""
    return max(4, min(16, width // _COLUMNS))


def strip_rows(width: int) -> int:
    """How many rows at the top of the picture the strip occupies."""
    return _ROWS * block_size(width)


def _bits(counter: int, timestamp_ms: int) -> npt.NDArray[np.bool_]:
    payload = (counter & 0xFFFFFFFF).to_bytes(4, "big") + (timestamp_ms & 0xFFFFFFFF).to_bytes(
        4, "big"
    )
    check = (zlib.crc32(payload) & 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(payload + check, dtype=np.uint8)).astype(bool)


def draw_strip(y: npt.NDArray[np.uint8], counter: int, timestamp_ms: int) -> None:
    """Draw the strip into the top rows of a luma plane, in place."""
    b = block_size(y.shape[1])
    bits = _bits(counter, timestamp_ms).reshape(_ROWS, _COLUMNS)
    blocks = np.where(bits, _WHITE, _BLACK).astype(np.uint8)
    strip = np.repeat(np.repeat(blocks, b, axis=0), b, axis=1)
    y[: _ROWS * b, :] = _BLACK
    y[: _ROWS * b, : _COLUMNS * b] = strip


def read_strip(y: npt.NDArray[np.uint8]) -> StripReading | None:
    """Read the strip back from a (possibly compressed) luma plane; None if it does not check."""
    height, width = y.shape
    b = block_size(width)
    if height < _ROWS * b or width < _COLUMNS * b:
        return None
    area = y[: _ROWS * b, : _COLUMNS * b].astype(np.float32)
    # Average the inner half of each block: the edges are where compression smears.
    q = b // 4
    cells = area.reshape(_ROWS, b, _COLUMNS, b)[:, q : b - q, :, q : b - q].mean(axis=(1, 3))
    bits = (cells > (_BLACK + _WHITE) / 2).reshape(-1)
    data = np.packbits(bits).tobytes()
    payload, check = data[:8], data[8:10]
    if (zlib.crc32(payload) & 0xFFFF).to_bytes(2, "big") != check:
        return None
    return StripReading(
        counter=int.from_bytes(payload[:4], "big"), timestamp_ms=int.from_bytes(payload[4:], "big")
    )
