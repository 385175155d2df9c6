"""Thumbnails from a segment's plaintext: the first picture, scaled, as JPEG; a clear error when
there is none."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from hub.console._thumbs import NoPicture, thumbnail_jpeg


def _segment(width: int, height: int) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(3):
            picture = np.full((height, width, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def test_the_first_picture_scaled_to_the_width_keeping_its_proportions() -> None:
    jpeg = thumbnail_jpeg(_segment(640, 360), width=192)
    assert jpeg.startswith(b"\xff\xd8")
    with av.open(io.BytesIO(jpeg), "r") as container:
        [frame] = list(container.decode(video=0))
    assert (frame.width, frame.height) == (192, 108)


def test_bytes_that_are_no_video_are_a_clear_error() -> None:
    with pytest.raises(NoPicture, match=r"^the segment"):
        thumbnail_jpeg(b"\x47" + b"\x00" * 1000)
