"""An H.264 camera whose pictures only feed motion decodes no more than motion needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware import FileCamera
from hardware.annexb import is_reference
from tests.hardware._media import rendered, write_video

# nal_ref_idc is bits 5-6 of the NAL header: 0x65 an IDR slice (ref 3), 0x41 a P slice (ref 2),
# 0x01 a slice no picture references, 0x67 an SPS.
IDR, P, NONREF, SPS = b"\x65", b"\x41", b"\x01", b"\x67"


@pytest.mark.parametrize(
    ("nals", "expected"),
    [((SPS, IDR), True), ((P,), True), ((NONREF,), False), ((SPS,), True), ((), True)],
)
def test_reference_pictures_are_told_apart(nals: tuple[bytes, ...], expected: bool) -> None:
    annexb = b"".join(b"\x00\x00\x00\x01" + n + b"\x88\x84" for n in nals)
    prefixed = b"".join(len(n + b"\x88\x84").to_bytes(4, "big") + n + b"\x88\x84" for n in nals)
    assert is_reference(annexb) is expected
    assert is_reference(prefixed, length_prefixed=True) is expected


@pytest.fixture(scope="module")
def with_nonref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 pictures, every other one a picture nothing references (x264 B-frames, no pyramid)."""
    path = tmp_path_factory.mktemp("light") / "nonref.ts"
    options = {"preset": "veryfast", "g": "10", "x264-params": "bframes=1:b-pyramid=none"}
    write_video(path, rendered(30), options=options)
    return path


@pytest.mark.asyncio
@pytest.mark.parametrize("light", [False, True])
async def test_unreferenced_pictures_go_undecoded(with_nonref: Path, light: bool) -> None:
    camera = FileCamera(with_nonref)
    if light:
        camera.decode_lightly()
    try:
        frames = [f async for f in camera.frames()]
    finally:
        await camera.close()
    # Every packet still comes, in order, to be recorded ...
    assert len(frames) == 30
    assert all(f.packet is not None for f in frames)
    repeated = [f for f in frames if not f.new_picture]
    if not light:
        assert repeated == []
    else:
        # ... but the pictures nothing references are not decoded: the last picture stands in.
        assert 10 <= len(repeated) <= 15
        assert all(not is_reference(f.packet.data) for f in repeated if f.packet is not None)
