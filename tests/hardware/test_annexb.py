"""Annex B helpers: finding an SPS, and which extradata can be prepended to keyframes."""

from __future__ import annotations

import pytest

from hardware.annexb import has_sps, parameter_sets

SPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR = b"\x00\x00\x01\x65\x88\x84"
SLICE = b"\x00\x00\x01\x41\x9a"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SPS + PPS + IDR, True),
        (IDR, False),
        (SLICE, False),
        (b"\x00\x00\x01", False),  # a start code with nothing after it
        (b"\x00" * 600 + SPS, False),  # only the start of an access unit is searched
    ],
)
def test_has_sps(data: bytes, expected: bool) -> None:
    assert has_sps(data) is expected


def test_only_annex_b_extradata_is_used() -> None:
    assert parameter_sets(SPS + PPS) == SPS + PPS
    assert parameter_sets(b"\x00\x00\x01\x67\x42") == b"\x00\x00\x01\x67\x42"
    assert parameter_sets(b"\x01\x42\x00\x1f\xff\xe1") == b""  # avcC (MP4) is not Annex B
    assert parameter_sets(None) == b""
