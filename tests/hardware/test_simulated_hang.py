"""The simulated camera's hang fault (a wedged capture: nothing delivered, no error) and its
reconnecting mode (how ``doorward serve`` plays a disconnect, as a live camera backs off)."""

from __future__ import annotations

import asyncio

import pytest

from hardware import CameraDisconnected, Frame, reconnecting
from hardware.sim import SimulatedCamera, parse_scenario
from tests.hardware.kit import FakeClock, camera_toml

pytestmark = pytest.mark.timeout(30)

HANG_FOR_GOOD = "\n[[fault]]\nkind = 'hang'\nat_s = 1.0\n"
HANG_A_WHILE = "\n[[fault]]\nkind = 'hang'\nat_s = 1.0\nduration_s = 0.5\n"
DISCONNECT = "\n[[fault]]\nkind = 'disconnect'\nat_s = 1.0\nduration_s = 0.5\n"


def camera(text: str, **kwargs: object) -> SimulatedCamera:
    return SimulatedCamera(parse_scenario(text, "sim.toml"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_hang_for_good_ends_a_virtual_run_with_the_frames_before_it() -> None:
    cam = camera(camera_toml(seconds=3.0) + HANG_FOR_GOOD)
    frames = [frame.index async for frame in cam.frames()]
    assert frames == list(range(10))
    assert cam.skipped_indices() == frozenset(range(10, 30))


@pytest.mark.asyncio
async def test_a_hang_with_a_duration_loses_the_frames_meanwhile_without_an_error() -> None:
    cam = camera(camera_toml(seconds=3.0) + HANG_A_WHILE)
    frames = [frame.index async for frame in cam.frames()]
    assert frames == [*range(10), *range(15, 30)]


@pytest.mark.asyncio
async def test_in_real_time_a_hang_for_good_delivers_nothing_until_closed() -> None:
    cam = camera(camera_toml(seconds=3.0) + HANG_FOR_GOOD, realtime=True, clock=FakeClock())
    got: list[Frame] = []
    ten = asyncio.Event()

    async def take() -> None:
        async for frame in cam.frames():
            got.append(frame)
            if len(got) == 10:
                ten.set()

    taking = asyncio.ensure_future(take())
    await asyncio.wait_for(ten.wait(), 5)
    for _ in range(50):  # the iterator is parked in the hang, not finished
        await asyncio.sleep(0)
    assert not taking.done()
    assert len(got) == 10
    await cam.close()
    await asyncio.wait_for(taking, 5)
    assert len(got) == 10


class GatedClock(FakeClock):
    """A fake clock whose long sleeps wait for the test to open the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def sleep(self, seconds: float) -> None:
        await self.gate.wait()
        await super().sleep(seconds)


@pytest.mark.asyncio
async def test_a_reconnecting_camera_rides_out_a_disconnect_and_says_so() -> None:
    clock = GatedClock()
    cam = camera(camera_toml(seconds=2.0) + DISCONNECT, realtime=True, clock=clock, reconnect=True)
    seen: list[tuple[int, bool]] = []
    frames = cam.frames()
    async for frame in frames:
        seen.append((frame.index, reconnecting(cam)))
        if frame.index == 9:
            # The next frame is due after the outage: meanwhile the camera says it reconnects.
            clock.gate.clear()
            waiting = asyncio.ensure_future(frames.__anext__())
            for _ in range(100):  # a few loop turns: the iterator reaches the gated sleep
                if reconnecting(cam):
                    break
                await asyncio.sleep(0)
            assert clock.t < 1.5
            assert not waiting.done()
            clock.gate.set()
            frame = await waiting
            seen.append((frame.index, reconnecting(cam)))
    indices = [index for index, _ in seen]
    assert indices == [*range(10), *range(15, 20)]
    assert not any(flag for _, flag in seen)


@pytest.mark.asyncio
async def test_without_reconnect_a_disconnect_still_raises() -> None:
    cam = camera(camera_toml(seconds=2.0) + DISCONNECT)
    with pytest.raises(CameraDisconnected):
        async for _ in cam.frames():
            pass
    assert not reconnecting(cam)
