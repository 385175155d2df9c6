"""The relay never waits for a viewer: a stalled viewer drops its queue and restarts at a keyframe
(a stalled listener only skips sound); one shared encode per codec serves every viewer, and the
microphone is read and encoded to Opus once, only while someone listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction

import av
import numpy as np
import pytest

from hardware import AudioChunk, EncodedPacket, Frame, SystemClock
from hardware.sim import SimulatedMicrophone
from hub.server.live.audio import MAX_QUEUED_AUDIO
from hub.server.live.feed import MAX_QUEUED_PACKETS, LivePacket, PacketFeed, frame_to_av
from hub.server.live.relay import FrameRelay
from hub.wire.errors import NotFound
from tests.hub.test_live_kit import dominant_hz

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def _frame(index: int, packet: EncodedPacket | None = None) -> Frame:
    y = np.full((16, 16), index % 256, dtype=np.uint8)
    uv = np.full((8, 8), 128, dtype=np.uint8)
    return Frame(index, index / 15, 1000 + index / 15, y, uv, uv.copy(), packet=packet)


async def test_the_relay_hands_each_frame_to_every_codec_feed_of_its_camera() -> None:
    relay = FrameRelay()
    hook = relay.add_camera("front")
    h264, vp8 = relay.feed("front", "h264"), relay.feed("front", "vp8")
    viewers = [h264.subscribe(), vp8.subscribe()]
    hook(_frame(0))
    for viewer in viewers:
        unit = await viewer.next()
        assert unit is not None
        assert unit.keyframe
    assert relay.frames_in["front"] == 1
    assert (h264.encoded_frames, vp8.encoded_frames) == (1, 1)
    assert (h264.encoding, vp8.encoding) == ("shared_h264", "shared_vp8")
    assert relay.viewer_count("front") == 2
    assert relay.audio("front") is None  # no microphone given
    for viewer in viewers:
        viewer.close()
    assert relay.viewer_count() == 0
    with pytest.raises(NotFound, match=r"^no camera named 'back'; GET /cameras lists them$"):
        relay.feed("back", "vp8")
    with pytest.raises(ValueError, match=r"^codec must be one of \['h264', 'vp8'\], got 'av1'$"):
        PacketFeed("front", "av1")


async def test_a_stalled_h264_viewer_restarts_at_the_next_keyframe() -> None:
    sps = b"\x00\x00\x00\x01\x67\x42"
    feed = PacketFeed("front", "h264", extradata=sps)
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
    assert feed.encoding == "passthrough_h264"
    viewer.close()
    assert feed.viewer_count == 0


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_one_shared_encode_feeds_every_viewer_of_a_codec(codec: str) -> None:
    feed = PacketFeed("front", codec)
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


async def test_live_h264_is_encoded_for_latency_one_picture_out_per_picture_in() -> None:
    """The live encode's own settings, as libx264 writes them into its first picture: the
    ultrafast preset (diamond motion search, no subpixel refinement, no deblocking), no B-frames
    and constrained baseline (no CABAC); and, with no look-ahead, each picture comes out as it
    goes in."""
    feed = PacketFeed("front", "h264")
    viewer = feed.subscribe()
    size = (96, 128)
    units = []
    for index in range(4):
        y = np.full(size, 40 + 30 * index, dtype=np.uint8)
        uv = np.full((size[0] // 2, size[1] // 2), 128, dtype=np.uint8)
        feed.push(Frame(index, index / 30, 1000 + index / 30, y, uv, uv.copy()))
        unit = await viewer.next()  # this picture's own access unit, before the next goes in
        assert unit is not None
        units.append(unit)
    assert [u.pts for u in units] == [round(i / 30 * 90000) for i in range(4)]
    assert units[0].keyframe
    assert not any(u.keyframe for u in units[1:])
    info = units[0].data.split(b"options: ", 1)[1].split(b"\x00", 1)[0].decode()
    options = dict(item.split("=", 1) for item in info.split())
    assert (options["me"], options["subme"], options["deblock"]) == ("dia", "0", "0:0:0")
    assert (options["bframes"], options["cabac"]) == ("0", "0")
    assert units[0].data.startswith(b"\x00\x00\x00\x01\x67\x42")  # SPS: baseline profile
    viewer.close()


@pytest.mark.parametrize("size", [(1280, 720), (100, 60)])  # rows as wide, rows padded
async def test_frame_to_av_keeps_every_plane_exactly(size: tuple[int, int]) -> None:
    width, height = size
    rng = np.random.default_rng(3)
    y, u, v = (
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in ((height, width), (height // 2, width // 2), (height // 2, width // 2))
    )
    picture = frame_to_av(Frame(0, 0.0, 0.0, y, u, v))
    assert (picture.width, picture.height, picture.format.name) == (width, height, "yuv420p")
    stacked = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    assert np.array_equal(picture.to_ndarray(), stacked.reshape(height * 3 // 2, width))


class HandMicrophone:
    """An AudioSource the test feeds by hand with the simulated microphone's own chunks."""

    def __init__(self) -> None:
        self.tone = SimulatedMicrophone(
            tone_hz=440.0,
            seconds=60.0,
            presses=(),
            clock=SystemClock(),
            origin=lambda: 0.0,
            realtime=False,
        )
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.listening = 0  # iterations open now
        self.stopped = asyncio.Event()

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Yields each queued chunk; marks it done once the consumer asks for the next one."""
        self.listening += 1
        try:
            while True:
                yield self.tone.chunk(await self.queue.get())
                self.queue.task_done()
        finally:
            self.listening -= 1
            self.stopped.set()


async def test_one_opus_encode_serves_every_listener_and_a_stalled_one_only_skips_sound() -> None:
    microphone = HandMicrophone()
    relay = FrameRelay()
    relay.add_camera("front", microphone=microphone)
    feed = relay.audio("front")
    assert feed is not None
    quick, slow = feed.subscribe(), feed.subscribe()
    for index in range(10):
        microphone.queue.put_nowait(index)
    received = [await quick.next() for _ in range(10)]
    assert (feed.chunks_in, feed.encoded_chunks, microphone.listening) == (10, 10, 1)
    assert [p.pts for p in received if p is not None] == [i * 960 for i in range(10)]
    # Both listeners got the very same packets: they were encoded once.
    assert [await slow.next() for _ in range(10)] == received
    decoder = av.CodecContext.create("libopus", "r")
    frames = [f for p in received if p is not None for f in decoder.decode(av.Packet(p.data))]
    assert dominant_hz(frames[5:]) == 440.0
    # The slow listener stops taking packets: past its queue it loses them, the quick one does not.
    for index in range(10, 10 + MAX_QUEUED_AUDIO + 1):
        microphone.queue.put_nowait(index)
        await microphone.queue.join()  # captured and handed out
        got = await quick.next()
        assert got is not None
        assert got.pts == index * 960
    assert (slow.skipped, quick.skipped) == (MAX_QUEUED_AUDIO + 1, 0)
    microphone.queue.put_nowait(99)
    resumed = await slow.next()
    assert resumed is not None
    assert resumed.pts == 99 * 960
    # The last listener to leave stops the capture.
    quick.close()
    slow.close()
    await asyncio.wait_for(microphone.stopped.wait(), 10)
    assert microphone.listening == 0
    assert feed.viewer_count == 0
