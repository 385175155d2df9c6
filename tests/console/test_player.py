"""The player's pieces: a ``Range`` header read as RFC 9110 says, and a clip remuxed into a
fragmented MP4 that decodes whole and from a later fragment."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from hub.cli.owner_ops import remux_to_mp4
from hub.console._player import PlayerCache, RangeNotSatisfiable, byte_range


def _clip(seconds: int, fps: int = 10) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for i in range(seconds * fps):
            picture = np.full((180, 320, 3), (7 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _boxes(data: bytes) -> list[str]:
    names, at = [], 0
    while at < len(data):
        size, name = struct.unpack(">I4s", data[at : at + 8])
        names.append(name.decode())
        at += size
    return names


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, 1000)),
        ("bytes=-200", (800, 1000)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file instead
        ("bytes=-", None),
        ("items=0-1", None),
    ],
)
def test_a_range_header_is_read_as_rfc_9110_says(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=20-10"])
def test_a_range_outside_the_file_is_not_satisfiable(header: str) -> None:
    with pytest.raises(
        RangeNotSatisfiable, match=r"^bytes \d+-\d+ lie outside the 1000-byte file$"
    ):
        byte_range(header, 1000)


def test_the_player_file_is_fragmented_and_plays_from_any_fragment() -> None:
    out = io.BytesIO()
    remux_to_mp4(_clip(3), out, fragmented=True)
    data = out.getvalue()
    boxes = _boxes(data)
    assert boxes[:2] == ["ftyp", "moov"]
    assert boxes.count("moof") == 3  # one fragment per keyframe (a second each)
    with av.open(io.BytesIO(data), "r") as mp4:
        assert sum(1 for _ in mp4.decode(video=0)) == 30
    with av.open(io.BytesIO(data), "r") as mp4:
        mp4.seek(2 * av.time_base)
        first = next(mp4.decode(video=0))
        assert float(first.time) >= 1.9


def test_the_cache_keeps_the_last_clips_played() -> None:
    cache = PlayerCache(max_clips=2)
    for name in ("a", "b", "c"):
        cache.put(("d", name), name.encode())
    assert cache.get(("d", "a")) is None
    assert cache.get(("d", "b")) == b"b"
    cache.put(("d", "e"), b"e")
    assert cache.get(("d", "c")) is None  # b was played more recently
    assert cache.get(("d", "b")) == b"b"
