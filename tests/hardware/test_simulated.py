"""SimulatedCamera: determinism, ground truth, light changes, faults, pacing, presses, packets."""

from __future__ import annotations

import itertools
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from hardware import ButtonEvent, CameraDisconnected, CameraSource, Frame
from hardware.sim import (
    SimulatedCamera,
    StripReading,
    TruthSpan,
    parse_scenario,
    read_strip,
    strip_rows,
)
from tests.hardware.kit import FakeClock, camera_toml

PERSON = '[[actor]]\nid = "p"\nkind = "person"\nenter_s = 1\nleave_s = 2\npath = [[0.2, 0.9], [0.8, 0.9]]\n'


async def collect(camera: SimulatedCamera) -> list[Frame]:
    return [frame async for frame in camera.frames()]


def camera(text: str, **kwargs: object) -> SimulatedCamera:
    return SimulatedCamera(parse_scenario(text, "sim.toml"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_is_a_camera_source_with_yuv420p_frames() -> None:
    cam = camera(camera_toml(seconds=1.0))
    assert isinstance(cam, CameraSource)
    assert cam.name == "sim"
    assert (cam.info.width, cam.info.height, cam.info.fps, cam.info.codec) == (
        160,
        96,
        Fraction(10),
        None,
    )
    frames = await collect(cam)
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts_s for f in frames] == [i / 10 for i in range(10)]
    f = frames[3]
    assert (f.y.shape, f.u.shape, f.v.shape) == ((96, 160), (48, 80), (48, 80))
    assert f.y.dtype == np.uint8
    assert f.packet is None
    assert read_strip(f.y) == StripReading(3, 300)
    start = parse_scenario(camera_toml(), "x").camera.start.timestamp()
    assert f.wall_s == pytest.approx(start + 0.3)
    await cam.close()


@pytest.mark.asyncio
async def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    text = camera_toml(seconds=2.0, noise=5.0) + PERSON
    a = await collect(camera(text))
    b = await collect(camera(text))
    c = await collect(camera(text.replace("noise = 5.0", "noise = 5.0\nseed = 2")))
    assert all(
        x.y.tobytes() == y.y.tobytes()
        and x.u.tobytes() == y.u.tobytes()
        and x.v.tobytes() == y.v.tobytes()
        for x, y in zip(a, b, strict=True)
    )
    assert a[0].y.tobytes() != c[0].y.tobytes()
    # Sensor noise: consecutive frames of a still scene differ, but only a little.
    below = slice(strip_rows(160), None)
    diff = a[1].y[below].astype(int) - a[0].y[below].astype(int)
    assert diff.std() > 2
    assert abs(diff.mean()) < 2


@pytest.mark.asyncio
async def test_truth_follows_actor_windows_and_actor_changes_pixels() -> None:
    frames = await collect(camera(camera_toml(seconds=3.0, noise=0) + PERSON))
    visible = [f.index for f in frames if f.truth]
    assert visible == list(range(10, 20))  # enter_s 1 .. leave_s 2 at 10 fps
    assert all(f.truth == frozenset({"p"}) for f in frames if f.truth)
    below = slice(strip_rows(160), None)
    empty, person = frames[5].y[below].astype(int), frames[15].y[below].astype(int)
    changed = np.abs(person - empty) > 25
    # The person covers a tall, narrow patch: several percent of the picture.
    assert 0.02 < changed.mean() < 0.3


@pytest.mark.asyncio
async def test_actor_outside_picture_is_not_truth() -> None:
    text = camera_toml(seconds=2.0) + (
        '[[actor]]\nkind = "car"\nenter_s = 0\npath = [[-0.9, 0.9], [-0.5, 0.9]]\n'
    )
    assert not any(f.truth for f in await collect(camera(text)))


@pytest.mark.asyncio
async def test_parcel_stays_until_the_end() -> None:
    text = (
        camera_toml(seconds=3.0) + '[[actor]]\nkind = "parcel"\nenter_s = 1\npath = [[0.5, 0.9]]\n'
    )
    frames = await collect(camera(text))
    assert [bool(f.truth) for f in frames] == [False] * 10 + [True] * 20


@pytest.mark.asyncio
async def test_waypoint_times_make_an_actor_wait() -> None:
    text = camera_toml(seconds=4.0, noise=0) + (
        '[[actor]]\nkind = "person"\nenter_s = 0\nleave_s = 4\n'
        "path = [[0.2, 0.9], [0.6, 0.9], [0.6, 0.9], [0.9, 0.9]]\ntimes = [0, 1, 3, 4]\n"
    )
    frames = await collect(camera(text))
    empty = await collect(camera(camera_toml(seconds=4.0, noise=0)))

    def silhouette(i: int) -> np.ndarray:
        return np.asarray(np.abs(frames[i].y.astype(int) - empty[i].y.astype(int)) > 10)

    # Standing still between 1 s and 3 s: the same silhouette; before that, elsewhere.
    assert silhouette(12).any()
    assert np.array_equal(silhouette(12), silhouette(25))
    assert not np.array_equal(silhouette(5), silhouette(12))


LIGHTS = {
    "headlights": '[[light]]\nkind = "headlights"\nat_s = 0.5\nduration_s = 2\n',
    "cloud": '[[light]]\nkind = "cloud"\nat_s = 0.5\nduration_s = 2\n',
    "ir_switch": '[[light]]\nkind = "ir_switch"\nat_s = 0.5\nduration_s = 2\n',
    "flicker": '[[light]]\nkind = "flicker"\nat_s = 0.5\nduration_s = 2\nperiod_s = 0.4\n',
}


@pytest.mark.parametrize("kind", sorted(LIGHTS))
@pytest.mark.asyncio
async def test_light_changes_change_the_picture_but_not_the_truth(kind: str) -> None:
    base = camera_toml(seconds=3.0, noise=0)
    dark = await collect(camera(base))
    lit = await collect(camera(base + LIGHTS[kind]))
    assert not any(f.truth for f in lit)
    below = slice(strip_rows(160), None)
    # Before the change the pictures are the same; during it the picture changes broadly.
    assert np.array_equal(dark[2].y, lit[2].y)
    during = [
        np.abs(lit[i].y[below].astype(int) - dark[i].y[below].astype(int)) for i in range(6, 25)
    ]
    assert max(float((d > 8).mean()) for d in during) > 0.3
    if kind == "ir_switch":
        assert (lit[10].u == 128).mean() > 0.95
        assert (lit[10].v == 128).mean() > 0.95
        assert (dark[10].u != 128).mean() > 0.5
    assert np.array_equal(dark[28].y, lit[28].y)  # and it is over after duration_s


@pytest.mark.asyncio
async def test_drop_frames_leave_index_gaps() -> None:
    text = camera_toml(seconds=2.0) + (
        '[[fault]]\nkind = "drop_frames"\nat_s = 0.5\nduration_s = 0.6\nevery = 2\n'
    )
    frames = await collect(camera(text))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 8, 10, *range(11, 20)]
    assert [read_strip(f.y).counter for f in frames] == [f.index for f in frames]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_disconnect_raises_then_reconnects_after_the_outage() -> None:
    text = (
        camera_toml(seconds=2.0) + '[[fault]]\nkind = "disconnect"\nat_s = 0.5\nduration_s = 0.8\n'
    )
    cam = camera(text)
    first: list[Frame] = []

    async def until_disconnect() -> None:
        async for frame in cam.frames():
            first.append(frame)

    with pytest.raises(CameraDisconnected) as err:
        await until_disconnect()
    assert str(err.value) == (
        "camera sim: disconnected at 0.500 s (simulated fault; it is back at 1.300 s: "
        "iterate frames() again)"
    )
    assert [f.index for f in first] == [0, 1, 2, 3, 4]
    assert [f.index for f in await collect(cam)] == list(range(13, 20))
    assert await collect(cam) == []  # the run is over


@pytest.mark.asyncio
async def test_clock_jump_moves_wall_time_only() -> None:
    text = camera_toml(seconds=1.0) + '[[fault]]\nkind = "clock_jump"\nat_s = 0.5\njump_s = -3600\n'
    frames = await collect(camera(text))
    steps = [b.wall_s - a.wall_s for a, b in itertools.pairwise(frames)]
    assert steps[4] == pytest.approx(-3600 + 0.1, abs=1e-5)
    assert all(s == pytest.approx(0.1, abs=1e-5) for i, s in enumerate(steps) if i != 4)
    assert [f.pts_s for f in frames] == [i / 10 for i in range(10)]


@pytest.mark.asyncio
async def test_realtime_paces_on_the_clock_and_stall_delays_delivery(clock: FakeClock) -> None:
    text = camera_toml(seconds=1.0) + '[[fault]]\nkind = "stall"\nat_s = 0.3\nduration_s = 0.4\n'
    cam = camera(text, realtime=True, clock=clock)
    delivered = []
    async for frame in cam.frames():
        delivered.append((frame.index, round(clock.monotonic(), 6), frame.wall_s))
    # No frame is lost; frames 3..6 wait for the end of the stall, then come in a burst.
    assert [d[0] for d in delivered] == list(range(10))
    assert [d[1] for d in delivered] == [0.0, 0.1, 0.2, 0.7, 0.7, 0.7, 0.7, 0.7, 0.8, 0.9]
    # wall_s is the capture time, even for the frames that arrive late.
    assert [d[2] for d in delivered] == pytest.approx(
        [clock.start_wall + i / 10 for i in range(10)], abs=1e-6
    )


@pytest.mark.asyncio
async def test_realtime_frames_are_drawn_off_the_event_loop_and_match_virtual_ones(
    clock: FakeClock,
) -> None:
    # Drawing a 720p picture takes milliseconds: in real time it must not hold up the loop
    # (live view's packets go out from there) nor delay the frame past its capture time.
    text = camera_toml(seconds=1.0, noise=5.0) + PERSON
    cam = camera(text, realtime=True, clock=clock)
    drawn_on: list[str] = []
    render = cam._renderer.render

    def spy(index: int) -> object:
        drawn_on.append(threading.current_thread().name)
        return render(index)

    cam._renderer.render = spy  # type: ignore[method-assign,assignment]
    live = await collect(cam)
    virtual = await collect(camera(text))
    assert [f.index for f in live] == list(range(10))
    assert len(drawn_on) == 10
    assert threading.main_thread().name not in drawn_on
    assert set(drawn_on) == {"camera-sim-sim"}
    for a, b in zip(live, virtual, strict=True):
        assert (a.y.tobytes(), a.u.tobytes(), a.v.tobytes()) == (
            b.y.tobytes(),
            b.u.tobytes(),
            b.v.tobytes(),
        )
        assert a.truth == b.truth
    await cam.close()


@pytest.mark.asyncio
async def test_scenario_presses_reach_the_button_in_frame_order() -> None:
    text = camera_toml(seconds=2.0) + "[[press]]\nat_s = 0.55\n[[press]]\nat_s = 1.2\nhold_s = 3\n"
    cam = camera(text)
    seen: list[tuple[int, int]] = []
    async for frame in cam.frames():
        seen.append((frame.index, cam.button.pending))
    # The press at 0.55 s is queued before frame 6 (0.6 s), the hold before frame 12.
    assert [n for i, n in seen if i in (5, 6, 11, 12)] == [0, 1, 1, 2]
    await cam.close()
    assert [e async for e in cam.button.events()] == [
        ButtonEvent("press", 0.55),
        ButtonEvent("hold", 1.2, held_s=3.0),
    ]


@pytest.mark.asyncio
async def test_h264_camera_packets_decode_to_the_same_pictures() -> None:
    text = camera_toml(320, 240, fps=5, seconds=6.0, h264=True) + (
        '[[fault]]\nkind = "corrupt_packets"\nat_s = 5\nduration_s = 1\nflips = 8\n'
    )
    cam = camera(text)
    assert cam.info.codec == "h264"
    frames = await collect(cam)
    packets = [f.packet for f in frames]
    assert all(p is not None for p in packets)
    assert [p.keyframe for p in packets] == [i % 10 == 0 for i in range(30)]  # type: ignore[union-attr]
    assert packets[0].data.startswith(b"\x00\x00\x00\x01")  # type: ignore[union-attr]
    decoder = av.CodecContext.create("h264", "r")
    decoded: list[np.ndarray] = []
    for packet in packets[:25]:  # the last second's packets are corrupted on purpose
        for picture in decoder.decode(av.Packet(packet.data)):  # type: ignore[union-attr]
            decoded.append(np.asarray(picture.to_ndarray(format="gray"), dtype=np.uint8))
    assert [read_strip(y) for y in decoded] == [StripReading(i, i * 200) for i in range(25)]
    clean = await collect(camera(text.split("[[fault]]")[0]))
    assert packets[24] == clean[24].packet
    assert packets[25].data != clean[25].packet.data  # type: ignore[union-attr]
    assert len(packets[25].data) == len(clean[25].packet.data)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_close_stops_iteration() -> None:
    cam = camera(camera_toml(seconds=2.0))
    seen = []
    async for frame in cam.frames():
        seen.append(frame.index)
        if frame.index == 3:
            await cam.close()
    assert seen == [0, 1, 2, 3]


def test_truth_spans_and_skipped_indices_without_rendering() -> None:
    text = (
        camera_toml(seconds=3.0)
        + PERSON
        + '[[actor]]\nid = "d"\nkind = "dog"\nenter_s = 0.5\n'
        + "path = [[0.5, 0.9], [-0.8, 0.9], [0.5, 0.9]]\ntimes = [0.5, 1.5, 2.5]\n"
        + '[[fault]]\nkind = "drop_frames"\nat_s = 0.2\nduration_s = 0.4\nevery = 2\n'
        + '[[fault]]\nkind = "disconnect"\nat_s = 2.5\nduration_s = 0.25\n'
    )
    cam = camera(text)
    assert cam.truth(6) == frozenset({"d"})
    assert cam.truth(15) == frozenset({"p"})
    # The dog runs out of the picture and back: two spans.
    spans = cam.truth_spans()
    assert [s.actor_id for s in spans] == ["d", "p", "d"]
    assert spans[1] == TruthSpan("p", 10, 19)
    assert spans[0].first_index == 5
    assert spans[2].last_index == 29
    assert spans[0].last_index < 15 < spans[2].first_index
    assert cam.skipped_indices() == frozenset({2, 4, 25, 26, 27})
