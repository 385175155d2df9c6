"""FileCamera: H.264 packets pass through untouched (TS and MP4), other codecs give frames only."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hardware import CameraOpenFailed, CameraSource, FileCamera, Frame
from hardware._demux import avcc_to_annexb
from hardware.sim import StripReading, read_strip
from tests.hardware._media import Planes, rendered, write_video

COUNT = 24  # frames in each test file, 15 fps


def nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B buffer."""
    types = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


@pytest.fixture(scope="module")
def pictures() -> list[Planes]:
    return rendered(COUNT)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, pictures: list[Planes]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    out = {}
    camera_like = {"preset": "veryfast", "tune": "zerolatency", "g": "10"}  # no B-frames
    for ext in ("ts", "mp4"):
        out[ext] = root / f"clip.{ext}"
        write_video(out[ext], pictures, options=camera_like)
    out["mp4_bframes"] = root / "bframes.mp4"
    write_video(out["mp4_bframes"], pictures, options={"preset": "veryfast", "g": "10", "bf": "2"})
    out["mpeg4"] = root / "clip.avi"
    write_video(out["mpeg4"], pictures, codec="mpeg4")
    return out


async def collect(camera: FileCamera) -> list[Frame]:
    return [frame async for frame in camera.frames()]


def demuxed_packets(path: Path, *, annexb: bool) -> list[bytes]:
    """The file's own packets as bytes, through mp4toannexb when asked."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if annexb else None
        out = []
        for packet in container.demux(stream):
            if packet.size:
                out += [bytes(p) for p in (bsf.filter(packet) if bsf else [packet])]
        return out


@pytest.mark.parametrize("ext", ["ts", "mp4"])
@pytest.mark.asyncio
async def test_h264_packets_pass_through_unchanged(videos: dict[str, Path], ext: str) -> None:
    cam = FileCamera(videos[ext])
    assert isinstance(cam, CameraSource)
    assert cam.name == "clip"
    info = cam.info
    assert (info.width, info.height, info.fps, info.codec) == (320, 240, Fraction(15), "h264")
    assert info.extradata is not None
    assert nal_types(info.extradata)[:2] == [7, 8]  # SPS, PPS in Annex B form
    frames = await collect(cam)
    await cam.close()
    assert [f.index for f in frames] == list(range(COUNT))
    assert [read_strip(f.y) for f in frames] == [
        StripReading(i, round(i * 1000 / 15)) for i in range(COUNT)
    ]
    assert [f.pts_s for f in frames] == pytest.approx([i / 15 for i in range(COUNT)])
    packets = [f.packet for f in frames]
    assert [p.data for p in packets] == demuxed_packets(videos[ext], annexb=ext == "mp4")  # type: ignore[union-attr]
    assert [p.keyframe for p in packets] == [i % 10 == 0 for i in range(COUNT)]  # type: ignore[union-attr]
    for packet in packets:
        assert packet is not None
        assert packet.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        if packet.keyframe:
            assert {5, 7, 8} <= set(nal_types(packet.data))  # IDR with SPS and PPS in-band


def decoded_copies(path: Path) -> list[np.ndarray]:
    """Each picture of the file as one yuv420p array, copied out by PyAV."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray() for frame in container.decode(video=0)]


@pytest.mark.asyncio
async def test_planes_are_read_only_views_that_outlive_the_camera(videos: dict[str, Path]) -> None:
    cam = FileCamera(videos["ts"])
    frames = await collect(cam)  # every picture held at once, then the decoder closed
    await cam.close()
    expected = decoded_copies(videos["ts"])
    assert len(frames) == len(expected) == COUNT
    for frame, picture in zip(frames, expected, strict=True):
        stacked = np.concatenate((frame.y.reshape(-1), frame.u.reshape(-1), frame.v.reshape(-1)))
        assert np.array_equal(stacked, picture.reshape(-1))
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        frames[0].y[0, 0] = 0
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        frames[0].u[0, 0] = 0


@pytest.mark.asyncio
async def test_a_new_iteration_continues_where_the_last_stopped(videos: dict[str, Path]) -> None:
    cam = FileCamera(videos["ts"])
    first = []
    async for frame in cam.frames():
        first.append(frame)
        if len(first) == 3:  # mid-way through a batch of decoded pictures
            break
    rest = await collect(cam)
    await cam.close()
    frames = first + rest
    assert [f.index for f in frames] == list(range(COUNT))
    assert [read_strip(f.y).counter for f in frames] == list(range(COUNT))  # type: ignore[union-attr]
    assert [f.packet.data for f in frames] == demuxed_packets(videos["ts"], annexb=False)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_passed_through_packets_remux_to_a_playable_ts(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    frames = await collect(FileCamera(videos["mp4"]))
    out = tmp_path / "remuxed.ts"
    with av.open(str(out), "w", format="mpegts") as container:
        stream = container.add_stream("h264", rate=15)
        stream.width, stream.height = 320, 240
        for frame in frames:
            assert frame.packet is not None
            packet = av.Packet(frame.packet.data)
            packet.pts, packet.dts = frame.packet.pts, frame.packet.dts
            packet.time_base = frame.packet.time_base
            packet.is_keyframe = frame.packet.keyframe
            packet.stream = stream
            container.mux(packet)
    replay = await collect(FileCamera(out))
    assert [read_strip(f.y).counter for f in replay] == list(range(COUNT))  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_b_frame_file_attaches_packets_in_decode_order(videos: dict[str, Path]) -> None:
    frames = await collect(FileCamera(videos["mp4_bframes"]))
    assert [read_strip(f.y).counter for f in frames] == list(range(COUNT))  # type: ignore[union-attr]
    packets = [f.packet for f in frames]
    assert [p.data for p in packets] == demuxed_packets(videos["mp4_bframes"], annexb=True)  # type: ignore[union-attr]
    assert [p.dts for p in packets] == sorted(p.dts for p in packets)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_other_codecs_give_frames_only(videos: dict[str, Path]) -> None:
    cam = FileCamera(videos["mpeg4"])
    assert cam.info.codec is None
    assert cam.info.extradata is None
    frames = await collect(cam)
    assert all(f.packet is None for f in frames)
    assert [read_strip(f.y).counter for f in frames] == list(range(COUNT))  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_loop_continues_counters_times_and_packet_timestamps(videos: dict[str, Path]) -> None:
    cam = FileCamera(videos["ts"], loop=True)
    frames = []
    async for frame in cam.frames():
        frames.append(frame)
        if len(frames) == 2 * COUNT + 3:
            break
    await cam.close()
    assert [f.index for f in frames] == list(range(2 * COUNT + 3))
    assert [f.pts_s for f in frames] == pytest.approx([i / 15 for i in range(2 * COUNT + 3)])
    assert [read_strip(f.y).counter for f in frames] == [i % COUNT for i in range(2 * COUNT + 3)]  # type: ignore[union-attr]
    dts = [f.packet.dts for f in frames]  # type: ignore[union-attr]
    assert dts == sorted(dts)
    assert len(set(dts)) == len(dts)
    assert frames[COUNT].packet.keyframe  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_realtime_replay_waits_for_each_frame(videos: dict[str, Path], clock) -> None:  # type: ignore[no-untyped-def]
    cam = FileCamera(videos["ts"], realtime=True, clock=clock)
    frames = await collect(cam)
    await cam.close()
    assert clock.monotonic() == pytest.approx((COUNT - 1) / 15)
    assert [f.wall_s for f in frames] == pytest.approx(
        [clock.start_wall + i / 15 for i in range(COUNT)]
    )


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CameraOpenFailed) as err:
        FileCamera(tmp_path / "none.mp4")
    assert str(err.value) == f"cannot open {tmp_path / 'none.mp4'}: No such file or directory"


def test_not_a_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is not a video at all" * 20)
    with pytest.raises(CameraOpenFailed) as err:
        FileCamera(path)
    assert str(err.value) == f"cannot open {path}: Invalid data found when processing input"


def test_avcc_to_annexb() -> None:
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3]) + b"\x67ab" + bytes([1, 0, 2]) + b"\x68c"
    assert avcc_to_annexb(avcc) == b"\x00\x00\x00\x01\x67ab\x00\x00\x00\x01\x68c"
    with pytest.raises(ValueError, match="not an avcC record"):
        avcc_to_annexb(b"\x00\x00\x00\x01\x67")


class BlockingClock:
    """A clock whose sleeps never end: the camera is waiting for a frame's due time."""

    def __init__(self) -> None:
        self.sleeping = asyncio.Event()

    def now(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_cancelling_a_consumer_then_closing_is_clean(videos: dict[str, Path]) -> None:
    clock = BlockingClock()
    cam = FileCamera(videos["ts"], realtime=True, clock=clock)
    got: list[Frame] = []

    async def consume() -> None:
        async for frame in cam.frames():
            got.append(frame)

    task = asyncio.create_task(consume())
    await clock.sleeping.wait()  # the camera holds frame 1 until its due time
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await cam.close()
    assert [f.index for f in got] == [0]
    assert await collect(cam) == []  # a closed camera delivers nothing


@pytest.mark.asyncio
async def test_raw_annex_b_file_gets_counted_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "dump.h264"
    write_video(path, rendered(8), options={"tune": "zerolatency", "g": "4"})
    cam = FileCamera(path)
    assert cam.info.codec == "h264"
    fps = cam.info.fps  # a raw stream has no container rate: whatever FFmpeg assumes
    frames = await collect(cam)
    assert [read_strip(f.y).counter for f in frames] == list(range(8))  # type: ignore[union-attr]
    assert [f.pts_s for f in frames] == pytest.approx([i / float(fps) for i in range(8)])
    packets = [f.packet for f in frames]
    assert [p.data for p in packets] == demuxed_packets(path, annexb=False)  # type: ignore[union-attr]
    assert [p.pts * p.time_base for p in packets] == [i / fps for i in range(8)]  # type: ignore[union-attr]
    assert [p.keyframe for p in packets] == [i % 4 == 0 for i in range(8)]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_truncated_file_ends_cleanly(videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["ts"].read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 + 77])  # mid-packet
    frames = await collect(FileCamera(cut))
    counters = [read_strip(f.y).counter for f in frames]  # type: ignore[union-attr]
    assert 0 < len(frames) < COUNT
    assert counters == list(range(len(frames)))
