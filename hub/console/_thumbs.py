"""A segment's thumbnail, made on the owner's machine: the decrypted segment (MPEG-TS) in, the
first picture scaled down as JPEG out. The doorbell never sees the picture."""

from __future__ import annotations

import io
from fractions import Fraction

from crypto.errors import DoorwardError

__all__ = ["THUMB_WIDTH", "thumbnail_jpeg"]

THUMB_WIDTH = 192  # px; the height keeps the picture's proportions
_PROBE = {"skip_frame": "all", "analyzeduration": "0"}


class NoPicture(DoorwardError):
    """The segment holds no picture that could be decoded."""


def thumbnail_jpeg(video: bytes, *, width: int = THUMB_WIDTH) -> bytes:
    """The first decodable picture of ``video`` (a segment's plaintext), ``width`` px wide, as
    JPEG; raises NoPicture when there is none."""
    import av  # only the console's thumbnails need the decoder here

    try:
        # Reading the stream's parameters would decode the first picture once more (FFmpeg's
        # probe decodes a few frames); skipping frames while probing halves a thumbnail's time.
        with av.open(io.BytesIO(video), "r", format="mpegts", options=_PROBE) as container:
            if not container.streams.video:
                raise NoPicture("the segment has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # one picture: decoder threads only add start-up time
            for frame in container.decode(stream):
                height = max(2, round(frame.height * width / frame.width / 2) * 2)
                encoder = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height = width, height
                encoder.pix_fmt = "yuvj420p"
                encoder.time_base = Fraction(1, 25)
                small = frame.reformat(width=width, height=height, format="yuvj420p")
                small.pts = 0
                packets = [*encoder.encode(small), *encoder.encode(None)]
                return b"".join(bytes(p) for p in packets)
    except av.FFmpegError as exc:
        raise NoPicture(f"the segment's video could not be decoded ({exc})") from None
    raise NoPicture("the segment holds no complete picture")
