"""open_camera: the one place a camera spec becomes a source; the simulator is loaded only there."""

from __future__ import annotations

import pytest

from hardware import DoorbellButton, button_of, open_camera
from hardware.sim import DEFAULT_SCENARIO, SimulatedCamera


@pytest.mark.asyncio
async def test_a_simulated_camera_plays_its_scenario_in_real_time_with_its_button() -> None:
    camera = open_camera("simulated", str(DEFAULT_SCENARIO), name="front")
    try:
        assert isinstance(camera, SimulatedCamera)
        assert (camera.name, camera.realtime) == ("front", True)
        assert button_of(camera) is camera.button
        assert isinstance(button_of(camera), DoorbellButton)
    finally:
        await camera.close()


def test_a_camera_without_a_button_has_none() -> None:
    assert button_of(object()) is None


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="camera kind must be simulated, file or live, got 'usb'"):
        open_camera("usb", "x", name="front")
