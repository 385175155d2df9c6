"""The relay never waits for a viewer: a stalled raw viewer skips to the newest frame, a stalled
H.264 viewer drops its queue and restarts at a keyframe; one shared encode serves every viewer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hardware import EncodedPacket, Frame
from hub._errors import NotFound
from hub._live_h264 import MAX_QUEUED_PACKETS, H264Feed, LivePacket
from hub.live import FrameRelay

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def _frame(index: int, packet: EncodedPacket | None = None) -> Frame:
    y = np.full((16, 16), index % 256, dtype=np.uint8)
    uv = np.full((8, 8), 128, dtype=np.uint8)
    return Frame(index, index / 15, 1000 + index / 15, y, uv, uv.copy(), packet=packet)


async def test_a_stalled_raw_viewer_gets_the_newest_frame_and_counts_the_rest() -> None:
    relay = FrameRelay()
    hook = relay.add_camera("front")
    slow, quick = relay.subscribe("front"), relay.subscribe("front")
    for index in range(5):
        hook(_frame(index), None)
        got = await quick.next()
        assert got is not None
        assert got.index == index
    newest = await slow.next()
    assert newest is not None
    assert (newest.index, slow.skipped, quick.skipped) == (4, 4, 0)
    slow.close()
    assert await slow.next() is None
    assert relay.viewer_count("front") == 1
    with pytest.raises(NotFound, match=r"^no camera named 'back'; GET /cameras lists them$"):
        relay.subscribe("back")


async def test_a_stalled_h264_viewer_restarts_at_the_next_keyframe() -> None:
    sps = b"\x00\x00\x00\x01\x67\x42"
    feed = H264Feed("front", extradata=sps)
    viewer = feed.subscribe()

    def packet(index: int, keyframe: bool) -> EncodedPacket:
        return EncodedPacket(
            b"\x00\x00\x00\x01\x65" + bytes([index % 256]), index, index, Fraction(1, 15), keyframe
        )

    feed.push(_frame(0, packet(0, False)))  # joined mid-GOP: nothing to decode yet
    feed.push(_frame(1, packet(1, True)))
    first = await viewer.next()
    assert first is not None
    assert first.keyframe
    assert first.data.startswith(sps)  # parameter sets put before a keyframe that lacks them
    assert first.pts == round(1 / 15 * 90000)
    for index in range(2, 3 + MAX_QUEUED_PACKETS):
        feed.push(_frame(index, packet(index, False)))
    # The queue overflowed: it was dropped, and the viewer waits for a keyframe again.
    feed.push(_frame(99, packet(99, False)))
    feed.push(_frame(100, packet(100, True)))
    resumed = await viewer.next()
    assert resumed is not None
    assert (resumed.keyframe, resumed.pts) == (True, round(100 / 15 * 90000))
    assert viewer.skipped == 1 + MAX_QUEUED_PACKETS + 1 + 1
    assert feed.passed_through == 2 + (MAX_QUEUED_PACKETS + 1) + 2
    assert feed.encoded_frames == 0
    viewer.close()
    assert feed.viewer_count == 0


async def test_one_shared_encode_feeds_every_h264_viewer() -> None:
    feed = H264Feed("front")
    viewers = [feed.subscribe(), feed.subscribe()]
    received: list[list[LivePacket]] = [[], []]
    for index in range(3):
        feed.push(_frame(index))
        for viewer, got in zip(viewers, received, strict=True):
            unit = await viewer.next()
            assert unit is not None
            got.append(unit)
    # Each frame was encoded once (the encoder was free each time), and both viewers got the
    # very same access units, starting with a keyframe.
    assert feed.encoded_frames == 3
    assert feed.skipped_frames == 0
    assert received[0] == received[1]
    assert received[0][0].keyframe
    for viewer in viewers:
        viewer.close()
