"""Two-stream cameras from files: the record stream demuxed only, the detect stream decoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware import Backoff, CameraOpenFailed, PacketCamera, TwoStreamCamera, open_camera
from tests.hardware._media import rendered, write_video
from tests.hardware.kit import FakeClock


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same 2 s scene as a 320x240 main stream and a 160x120 substream (MPEG-TS, H.264)."""
    root = tmp_path_factory.mktemp("streams")
    main, sub = root / "main.ts", root / "sub.ts"
    write_video(main, rendered(30, 320, 240))
    write_video(sub, rendered(30, 160, 120))
    return main, sub


@pytest.mark.asyncio
async def test_a_record_stream_is_read_as_packets(streams: tuple[Path, Path]) -> None:
    main, _ = streams
    camera = PacketCamera(main, realtime=False)
    packets = [p async for p in camera.packets()]
    assert (camera.info.width, camera.info.height, camera.info.codec) == (320, 240, "h264")
    assert camera.info.fps == 15  # from the packets' timestamps: the file is not analysed
    assert len(packets) == 30
    assert packets[0].packet.keyframe
    assert [p.index for p in packets] == list(range(30))


def test_a_record_stream_that_is_not_h264_is_refused(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_video(video, rendered(3), codec="mpeg4")
    with pytest.raises(CameraOpenFailed, match=r"its video is mpeg4, not H\.264"):
        PacketCamera(video)


@pytest.mark.asyncio
async def test_frames_carry_main_packets_and_detect_pictures(streams: tuple[Path, Path]) -> None:
    main, sub = streams
    camera = open_camera("file", str(main), name="garden", detect=("file", str(sub)))
    assert isinstance(camera, TwoStreamCamera)
    assert (camera.info.width, camera.detect_info.width) == (320, 160)
    frames = []
    try:
        async for frame in camera.frames():
            frames.append(frame)
            if len(frames) == 20:
                break
    finally:
        await camera.close()
    assert all(f.packet is not None for f in frames)
    assert {f.y.shape for f in frames} == {(120, 160)}
    assert any(f.new_picture for f in frames[1:])  # the substream's pictures, as they came


def test_a_simulated_camera_with_detect_is_refused() -> None:
    with pytest.raises(ValueError, match="a simulated camera makes its own detect stream"):
        open_camera("simulated", "x.toml", name="c", detect=("file", "y.ts"))


@pytest.mark.asyncio
async def test_a_live_record_stream_reconnects_when_it_ends(streams: tuple[Path, Path]) -> None:
    main, _ = streams
    clock = FakeClock()
    camera = PacketCamera(
        main, live=True, clock=clock, backoff=Backoff(initial_s=0.5, factor=2.0, jitter=0.0)
    )
    assert (await camera.connect()).codec == "h264"
    packets = []
    async for packet in camera.packets():
        packets.append(packet)
        if len(packets) == 60:
            break
    await camera.close()
    # Two connections' worth, numbered on; the second came after a backoff wait, later in time.
    assert [p.index for p in packets] == list(range(60))
    assert clock.sleeps == [0.5]
    assert packets[30].pts_s >= 0.5 > packets[29].pts_s
    assert packets[30].packet.keyframe
