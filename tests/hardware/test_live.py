"""LiveCamera: source parsing, the backoff schedule, and the reconnect loop against real files.

A real RTSP server or V4L2 device is not available in tests; the reconnect loop is exercised
with ``file:`` sources (a file that ends is a stream that drops) and with paths that fail to open.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hardware import (
    Backoff,
    CameraOpenFailed,
    HardwareError,
    LiveCamera,
    SourceSpec,
    parse_source,
    reconnecting,
)
from hardware.sim import read_strip
from tests.hardware._media import rendered, write_video
from tests.hardware.kit import FakeClock


def test_backoff_schedule_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=30.0, jitter=0.0)
    assert [backoff.delay_s(n) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay_s(10_000) == 30.0  # no overflow for long outages


def test_backoff_jitter_spreads_symmetrically() -> None:
    backoff = Backoff(initial_s=1.0, factor=3.0, max_s=100.0, jitter=0.2)
    assert backoff.delay_s(2, rand=0.0) == pytest.approx(7.2)
    assert backoff.delay_s(2, rand=0.5) == pytest.approx(9.0)
    assert backoff.delay_s(2, rand=1.0) == pytest.approx(10.8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_s": 0}, "initial_s must be > 0, got 0"),
        ({"factor": 0.5}, "factor must be >= 1, got 0.5"),
        ({"max_s": 0.1}, "max_s must be >= initial_s (0.5), got 0.1"),
        ({"jitter": 1.0}, "jitter must be in [0, 1), got 1.0"),
    ],
)
def test_backoff_refuses_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Backoff(**kwargs)


def test_backoff_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^attempt must be >= 0, got -1$"):
        Backoff().delay_s(-1)
    with pytest.raises(ValueError, match=r"^rand must be in \[0, 1\], got 2$"):
        Backoff().delay_s(0, rand=2)


def test_parse_source() -> None:
    assert parse_source("v4l2:/dev/video0", v4l2_options={"input_format": "h264"}) == SourceSpec(
        "/dev/video0", "v4l2", {"input_format": "h264"}
    )
    assert parse_source("rtsp://cam.local/stream", read_timeout_s=2.5) == SourceSpec(
        "rtsp://cam.local/stream", None, {"rtsp_transport": "tcp", "timeout": "2500000"}
    )
    assert parse_source("file:/tmp/x.ts") == SourceSpec("/tmp/x.ts")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("v4l2:video0", "camera source 'v4l2:video0' is not a V4L2 device: use v4l2:/dev/videoN"),
        (
            "http://bob:hunter2@cam.local/mjpeg",
            "camera source 'http://***@cam.local/mjpeg' is not supported: use v4l2:/dev/videoN, "
            "rtsp://host/path or file:/path",
        ),
    ],
)
def test_unsupported_sources_are_refused(source: str, message: str) -> None:
    with pytest.raises(CameraOpenFailed) as err:
        LiveCamera(source)
    assert str(err.value) == message


def test_credentials_never_appear_in_the_name() -> None:
    cam = LiveCamera("rtsp://bob:hunter2@cam.local:554/stream")
    assert cam.name == "rtsp://***@cam.local:554/stream"
    assert cam.spec.display_url == "rtsp://***@cam.local:554/stream"
    assert "hunter2" not in repr(cam.spec)
    with pytest.raises(HardwareError) as err:
        _ = cam.info
    assert str(err.value) == (
        "camera rtsp://***@cam.local:554/stream has not connected yet: await connect() first"
    )


@pytest.mark.asyncio
async def test_rtsp_refused_names_the_url_without_credentials() -> None:
    # Port 9 (discard) on loopback has no RTSP server: the connection is refused at once.
    cam = LiveCamera(
        "rtsp://bob:hunter2@127.0.0.1:9/stream",
        clock=FakeClock(),
        max_attempts=1,
        open_timeout_s=5,
    )
    with pytest.raises(CameraOpenFailed) as err:
        await cam.connect()
    assert str(err.value) == (
        "cannot open rtsp://***@127.0.0.1:9/stream: Connection refused (gave up after 1 attempt)"
    )
    await cam.close()


@pytest.mark.asyncio
async def test_open_failures_back_off_then_give_up(tmp_path: Path) -> None:
    clock = FakeClock()
    missing = tmp_path / "camera.ts"
    cam = LiveCamera(f"file:{missing}", clock=clock, rand=lambda: 0.5, max_attempts=4)
    with pytest.raises(CameraOpenFailed) as err:
        await cam.connect()
    assert str(err.value) == (
        f"cannot open {missing}: No such file or directory (gave up after 4 attempts in a row)"
    )
    assert clock.sleeps == [0.5, 1.0, 2.0]
    await cam.close()


@pytest.mark.asyncio
async def test_source_that_appears_later_connects(tmp_path: Path) -> None:
    path = tmp_path / "late.ts"

    class PluggedInLater(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds)
            if len(self.sleeps) == 2:
                write_video(path, rendered(6), options={"tune": "zerolatency", "g": "5"})

    clock = PluggedInLater()
    cam = LiveCamera(f"file:{path}", clock=clock, rand=lambda: 0.0, max_attempts=5)
    info = await cam.connect()
    assert (info.width, info.height, info.codec) == (320, 240, "h264")
    assert clock.sleeps == [pytest.approx(0.45), pytest.approx(0.9)]
    assert cam.connections == 1
    await cam.close()


@pytest.mark.asyncio
async def test_stream_end_reconnects_and_indices_continue(tmp_path: Path) -> None:
    path = tmp_path / "cam.ts"
    write_video(path, rendered(6), options={"tune": "zerolatency", "g": "5"})
    clock = FakeClock()
    cam = LiveCamera(f"file:{path}", clock=clock, rand=lambda: 0.5)
    frames = []
    async for frame in cam.frames():
        frames.append(frame)
        clock.t += 0.1  # the next picture arrives a frame later
        if len(frames) == 15:
            break
    await cam.close()
    assert cam.connections == 3
    assert [f.index for f in frames] == list(range(15))
    assert [read_strip(f.y).counter for f in frames] == [i % 6 for i in range(15)]  # type: ignore[union-attr]
    # Each reconnect after a working stream waits the first backoff step only.
    assert clock.sleeps == [0.5, 0.5]
    assert [f.pts_s for f in frames] == pytest.approx([i * 0.1 + 0.5 * (i // 6) for i in range(15)])
    assert [f.wall_s - f.pts_s for f in frames] == pytest.approx([clock.start_wall] * 15)
    dts = [f.packet.dts for f in frames]  # type: ignore[union-attr]
    assert dts == sorted(dts)
    assert frames[6].packet.keyframe  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_camera_backing_off_says_it_is_reconnecting(tmp_path: Path) -> None:
    path = tmp_path / "cam.ts"
    write_video(path, rendered(3), options={"tune": "zerolatency", "g": "5"})

    class Watching(FakeClock):
        """Notes, at each backoff sleep, whether the camera said it was reconnecting."""

        def __init__(self) -> None:
            super().__init__()
            self.said: list[bool] = []

        async def sleep(self, seconds: float) -> None:
            self.said.append(reconnecting(cam))
            await super().sleep(seconds)

    clock = Watching()
    cam = LiveCamera(f"file:{path}", clock=clock, rand=lambda: 0.5)
    flags = []
    async for frame in cam.frames():
        flags.append(reconnecting(cam))
        clock.t += 0.1
        if frame.index == 4:
            break
    await cam.close()
    assert clock.said == [True]  # during the backoff after the stream ended
    assert flags == [False] * 5  # every frame delivered means connected
    assert not reconnecting(cam)
