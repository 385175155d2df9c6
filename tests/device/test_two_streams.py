"""Two-stream cameras through the real pipeline: motion on the substream, the main stream remuxed,
and the faults (detect stream lost, sizes that change, a substream at another rate)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity
from device import (
    CameraPipeline,
    ClipStore,
    DetectStreamLost,
    DetectStreamRestored,
    DeviceEvent,
    MotionConfig,
    RecorderConfig,
    detector_for,
)
from device.harness import run_scenario
from hardware import Frame, StreamInfo, fit_plane
from hardware.sim import SimulatedCamera, parse_scenario, two_stream_camera
from hub.server.events import device_event
from tests.device.kit import decode_counters, decrypt_segments

# Main 640x360 H.264, substream 320x180: the 1080p/360p shape at a size a test runs quickly.
TWO_STREAMS = """
[camera]
width = 640
height = 360
fps = 15
seconds = {seconds}
seed = 1
h264 = true
detect_width = 320
detect_height = 180
{camera_extra}

[[actor]]
id = "visitor"
kind = "person"
enter_s = 7
leave_s = 16
path = [[-0.1, 0.92], [0.66, 0.86], [0.66, 0.86], [-0.1, 0.92]]
times = [7, 10, 13, 16]

[expect]
all_events_recorded = true
max_false_clips = 0
max_trigger_latency_frames = 10
min_preroll_s = 5.0
{faults}
"""


def _scenario(
    tmp_path: Path, *, seconds: float = 20, camera_extra: str = "", faults: str = ""
) -> Path:
    path = tmp_path / "two.toml"
    path.write_text(TWO_STREAMS.format(seconds=seconds, camera_extra=camera_extra, faults=faults))
    return path


def test_a_two_stream_camera_is_judged_against_the_same_ground_truth(tmp_path: Path) -> None:
    report = run_scenario(_scenario(tmp_path))
    assert report.failures == ()
    assert report.events_recorded == 1
    # The main stream is remuxed, never re-encoded; motion looked at substream pictures only.
    assert (report.encoded_frames, report.remuxed_packets) == (0, 300)
    assert report.fallback_pictures == 0
    assert report.detect_losses == 0
    assert report.frame_gaps == 0
    assert report.unreadable_frames == 0


def test_a_substream_at_another_rate_is_looked_at_once_per_picture(tmp_path: Path) -> None:
    report = run_scenario(_scenario(tmp_path, camera_extra="detect_fps = 5"))
    assert report.failures == ()
    # 100 substream pictures in 20 s: none looked at twice, though 300 main packets carried them.
    assert report.analysed_frames <= 100
    assert report.remuxed_packets == 300


def test_a_detect_stream_that_stops_falls_back_to_the_main_stream_and_loses_nothing(
    tmp_path: Path,
) -> None:
    faults = '[[fault]]\nkind = "detect_stop"\nat_s = 3\nduration_s = 11\n'
    report = run_scenario(_scenario(tmp_path, faults=faults))
    # The visitor (7..16 s) comes while the substream is silent: found on the main stream.
    assert report.failures == ()
    assert report.events_recorded == 1
    assert report.detect_losses == 1
    assert report.fallback_pictures > 0
    assert report.frame_gaps == 0
    assert report.dropped_frames == 0


def test_a_detect_stream_that_changes_size_is_scaled_back(tmp_path: Path) -> None:
    faults = (
        '[[fault]]\nkind = "detect_resize"\nat_s = 6\nduration_s = 6\nwidth = 256\nheight = 144\n'
    )
    report = run_scenario(_scenario(tmp_path, faults=faults))
    assert report.failures == ()
    assert report.resized_pictures == 90
    assert report.detect_losses == 0


@pytest.mark.asyncio
async def test_owners_hear_when_the_detect_stream_is_lost_and_back(tmp_path: Path) -> None:
    text = TWO_STREAMS.format(
        seconds=9,
        camera_extra="",
        faults='[[fault]]\nkind = "detect_stop"\nat_s = 1\nduration_s = 4\n',
    )
    source = two_stream_camera(parse_scenario(text, "two.toml"), realtime=False, reconnect=True)
    owner = age.X25519Identity.generate()
    store = ClipStore(tmp_path / "data", DeviceIdentity.generate())
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "garden",
        source,
        store,
        lambda: [owner.recipient()],
        detector=detector_for(source),
        on_event=events.append,
    )
    try:
        await pipeline.run()
    finally:
        store.close()
    changes = [e for e in events if isinstance(e, DetectStreamLost | DetectStreamRestored)]
    assert [type(e) for e in changes] == [DetectStreamLost, DetectStreamRestored]
    lost = changes[0]
    assert isinstance(lost, DetectStreamLost)
    assert "motion decodes the main stream" in lost.reason
    assert device_event(lost) == ("camera.detect_lost", {"camera": "garden", "reason": lost.reason})
    assert device_event(changes[1]) == ("camera.detect_restored", {"camera": "garden"})


def test_privacy_zones_cannot_mask_a_main_stream_that_is_never_decoded(tmp_path: Path) -> None:
    text = TWO_STREAMS.format(seconds=20, camera_extra="", faults="")
    source = two_stream_camera(parse_scenario(text, "two.toml"), realtime=False)
    zone = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5))
    with pytest.raises(ValueError, match=r"^camera garden has privacy zones and a detect stream"):
        CameraPipeline(
            "garden",
            source,
            None,
            list,
            config=RecorderConfig(privacy_zones=(zone,)),  # type: ignore[arg-type]
        )


class _Resized:
    """A raw camera whose picture size changes mid-way (a camera reconfigured while recording)."""

    name = "resized"

    def __init__(self, camera: SimulatedCamera, at_index: int, width: int, height: int) -> None:
        self._camera = camera
        self._at = at_index
        self._size = (width, height)

    @property
    def info(self) -> StreamInfo:
        return self._camera.info

    async def frames(self) -> AsyncIterator[Frame]:
        w, h = self._size
        async for frame in self._camera.frames():
            if frame.index >= self._at:
                frame = Frame(
                    frame.index,
                    frame.pts_s,
                    frame.wall_s,
                    fit_plane(frame.y, w, h),
                    fit_plane(frame.u, w // 2, h // 2),
                    fit_plane(frame.v, w // 2, h // 2),
                )
            yield frame

    async def close(self) -> None:
        await self._camera.close()


@pytest.mark.asyncio
async def test_a_raw_camera_whose_size_changes_mid_clip_keeps_recording(tmp_path: Path) -> None:
    text = "[camera]\nwidth = 320\nheight = 240\nfps = 15\nseconds = 6\nseed = 3\n"
    camera = SimulatedCamera(parse_scenario(text + "\n[[press]]\nat_s = 0.5\n", "c.toml"))
    source = _Resized(camera, 45, 400, 224)
    owner = age.X25519Identity.generate()
    store = ClipStore(tmp_path / "data", DeviceIdentity.generate())
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front",
        source,
        store,
        lambda: [owner.recipient()],
        detector=detector_for(source, MotionConfig()),
        config=RecorderConfig(post_roll_s=10.0),
        on_event=events.append,
        button=camera.button,
    )
    try:
        stats = await pipeline.run()
        [clip] = store.list_clips()
        counters = [
            c for ts in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(ts)
        ]
    finally:
        store.close()
    assert stats.errors == 0
    assert stats.resized_frames == 45
    assert stats.encoded_frames == 90
    # Every frame, before and after the change, is in the clip at the size it began with.
    assert len(counters) == 90
